import Foundation

/// Turns `[String: Any]` properties into the JSON object text the core expects.
///
/// It never throws and never lets JSONSerialization raise its Objective-C exception
/// (a crash): analytics must not crash the app, so a value JSON cannot hold is converted
/// by these rules:
/// - `nil` (an `Optional` holding none) becomes `null`;
/// - `Date` becomes an ISO 8601 string, `URL` its absolute string;
/// - NaN and the infinities (JSON has none) become `null`;
/// - a dictionary key that is not a `String` becomes its `String(describing:)`;
/// - any other value JSON cannot hold (a struct, `Data`, ...) becomes its
///   `String(describing:)` as a JSON string;
/// - a value nested deeper than ``maxDepth`` becomes `null`.
enum JSONProperties {
    /// Deepest nesting written; deeper values become `null`.
    static let maxDepth = 64

    /// The JSON text for `object`, or `""` when it is empty (the core's "no properties").
    static func encode(_ object: [String: Any]) -> String {
        if object.isEmpty { return "" }
        let normalized = normalize(object, depth: 0)
        // Cannot fail after normalize (only JSON types remain); checked anyway, because
        // JSONSerialization crashes instead of throwing on a value it cannot encode.
        guard JSONSerialization.isValidJSONObject(normalized),
              let data = try? JSONSerialization.data(withJSONObject: normalized, options: [.withoutEscapingSlashes])
        else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A copy of `value` that JSONSerialization accepts, by the rules above.
    private static func normalize(_ value: Any, depth: Int) -> Any {
        if depth > maxDepth { return NSNull() }
        if let unwrapped = unwrapOptional(value) {
            guard let inner = unwrapped.value else { return NSNull() }
            return normalize(inner, depth: depth)
        }
        switch value {
        case let dictionary as [String: Any]:
            var out = [String: Any](minimumCapacity: dictionary.count)
            for (key, element) in dictionary {
                out[key] = normalize(element, depth: depth + 1)
            }
            return out
        case let dictionary as [AnyHashable: Any]:
            var out = [String: Any](minimumCapacity: dictionary.count)
            for (key, element) in dictionary {
                out[String(describing: key.base)] = normalize(element, depth: depth + 1)
            }
            return out
        case let array as [Any]:
            return array.map { normalize($0, depth: depth + 1) }
        case let date as Date:
            return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        case let url as URL:
            return url.absoluteString
        case let number as Double where !number.isFinite:
            return NSNull()
        case let number as Float where !number.isFinite:
            return NSNull()
        default:
            // A scalar: let JSONSerialization itself judge it, without risking its exception.
            return JSONSerialization.isValidJSONObject([value]) ? value : String(describing: value)
        }
    }

    /// `.some(.some(x))`/`.some(nil)` for an `Optional` boxed in `Any`, `nil` for any other value.
    private static func unwrapOptional(_ value: Any) -> (value: Any?, Void)? {
        let mirror = Mirror(reflecting: value)
        guard mirror.displayStyle == .optional else { return nil }
        return (mirror.children.first?.value, ())
    }
}
