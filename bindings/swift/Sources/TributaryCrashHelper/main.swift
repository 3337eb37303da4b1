// Test helper for the Swift tests' kill test (not shipped): records events offline in a
// storage directory, waits until they are durable, reports it on stdout, and then keeps
// recording until the test kills the process with SIGKILL.
//
// Usage: TributaryCrashHelper STORAGE_DIR ENDPOINT COUNT
import Foundation
import Tributary

let args = CommandLine.arguments
guard args.count == 4, let count = Int(args[3]) else {
    FileHandle.standardError.write(Data("usage: TributaryCrashHelper STORAGE_DIR ENDPOINT COUNT\n".utf8))
    exit(2)
}
do {
    var config = Tributary.configuration(
        endpoint: args[2], writeKey: "test-key", storageDirectory: URL(fileURLWithPath: args[1])
    )
    config.flushAt = 10_000
    let tributary = try Tributary(config: config, logger: nil)
    tributary.setNetworkAvailable(false)
    for index in 0..<count {
        tributary.track("Before Kill", properties: ["n": index])
    }
    // Offline, flushBlocking returns once everything recorded so far is durable.
    let result = tributary.flushBlocking(timeout: 30)
    // Unbuffered write: the parent must see this line before it kills us.
    FileHandle.standardOutput.write(Data("durable \(count) \(result)\n".utf8))
    // Keep writing while the parent kills us: these may or may not survive.
    // At most 5,000, half the core's channel capacity, so none is dropped for
    // backpressure and the survivors must be a gap-free prefix.
    for extra in 0..<5_000 {
        tributary.track("During Kill", properties: ["n": extra])
        if extra % 100 == 99 { usleep(1_000) }
    }
    while true { sleep(60) }
} catch {
    FileHandle.standardOutput.write(Data("error \(error)\n".utf8))
    exit(1)
}
