import Foundation
import Testing
@testable import Tributary

/// The Swift-side encoding alone (no Rust involved).
struct JSONPropertiesTests {
    @Test func emptyPropertiesMeanNone() throws {
        #expect(try JSONProperties.encode([:], argument: "properties") == "")
    }

    @Test func encodesNestedValuesAsAJSONObject() throws {
        let text = try JSONProperties.encode(
            ["a": [1, true, "s", NSNull()] as [Any], "b": ["c": 2.5], "url": URL(string: "https://x.dev/p")!],
            argument: "properties"
        )
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect((decoded["a"] as? [Any])?.count == 4)
        #expect((decoded["b"] as? [String: Any])?["c"] as? Double == 2.5)
        #expect(decoded["url"] as? String == "https://x.dev/p")
        #expect(text.contains("https://x.dev/p"), "slashes are not escaped")
    }

    @Test func millisecondsClampAndRoundUp() {
        #expect(Tributary.milliseconds(1.5) == 1_500)
        #expect(Tributary.milliseconds(0.0001) == 1)
        #expect(Tributary.milliseconds(-3) == 0)
        #expect(Tributary.milliseconds(.nan) == 0)
        #expect(Tributary.milliseconds(.infinity) == 0)
        #expect(Tributary.milliseconds(1e300) == UInt64.max)
    }
}
