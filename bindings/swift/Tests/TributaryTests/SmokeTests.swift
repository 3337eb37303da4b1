import Foundation
import Testing
@testable import Tributary

@Test func invalidConfigIsASwiftError() throws {
    let config = Config(endpoint: "ftp://x", writeKey: "k", storageDir: "/tmp/x")
    #expect(throws: TributaryError.self) { try Tributary(config: config, logger: nil) }
}
