import Foundation
import Testing
@testable import Tributary

/// The Swift-side encoding alone (no Rust involved).
struct JSONPropertiesTests {
    @Test func emptyPropertiesMeanNone() throws {
        #expect(JSONProperties.encode([:]) == "")
    }

    @Test func encodesNestedValuesAsAJSONObject() throws {
        let text = JSONProperties.encode(
            ["a": [1, true, "s", NSNull()] as [Any], "b": ["c": 2.5], "url": URL(string: "https://x.dev/p")!]
        )
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect((decoded["a"] as? [Any])?.count == 4)
        #expect((decoded["b"] as? [String: Any])?["c"] as? Double == 2.5)
        #expect(decoded["url"] as? String == "https://x.dev/p")
        #expect(text.contains("https://x.dev/p"), "slashes are not escaped")
    }

    @Test func valuesThatAreNotJSONAreConvertedNotRefused() throws {
        struct NotJSON: CustomStringConvertible { var description: String { "not-json" } }
        let text = JSONProperties.encode([
            "thing": NotJSON(),
            "nested": ["deep": [1, NotJSON()] as [Any]],
            "nan": Double.nan,
            "infinity": -Double.infinity,
            "float": Float.infinity,
            "keys": [1: "one"] as [Int: String],
            "data": Data([1, 2, 3]),
            "none": Optional<Int>.none as Any,
        ])
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(decoded["thing"] as? String == "not-json")
        #expect((decoded["nested"] as? [String: Any])?["deep"] as? [AnyHashable] == [1, "not-json"])
        #expect(decoded["nan"] is NSNull)
        #expect(decoded["infinity"] is NSNull)
        #expect(decoded["float"] is NSNull)
        #expect((decoded["keys"] as? [String: Any])?["1"] as? String == "one")
        #expect(decoded["data"] as? String == "3 bytes")
        #expect(decoded["none"] is NSNull)
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
