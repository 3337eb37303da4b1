package dev.tributary.sample

/**
 * Where the sample sends its events. 10.0.2.2 is the host's loopback as seen from
 * the Android emulator: run the ingest server on the host (`cargo run -p ingest-server`)
 * or any Segment-compatible collector, and change these for a real device.
 */
object SampleConfig {
    const val ENDPOINT = "http://10.0.2.2:8080"
    const val WRITE_KEY = "sample-write-key"
}
