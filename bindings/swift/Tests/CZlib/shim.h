// zlib for the test server's gzip decoding (zlib1g-dev in the Swift root; the SDK on Apple platforms).
#include <zlib.h>
