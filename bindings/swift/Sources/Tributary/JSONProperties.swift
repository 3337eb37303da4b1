import Foundation

/// Turns `[String: Any]` properties into the JSON object text the core expects.
///
/// JSONSerialization raises an Objective-C exception (a crash) for values it cannot
/// encode, so every value is checked first and a bad one becomes a thrown
/// ``TributaryError/InvalidJson(message:)`` naming its path, e.g. `properties.items[2]`.
enum JSONProperties {
    /// The JSON text for `object`, or `""` when it is empty (the core's "no properties").
    static func encode(_ object: [String: Any], argument: String) throws -> String {
        if object.isEmpty { return "" }
        let normalized = try normalize(object, path: argument)
        guard JSONSerialization.isValidJSONObject(normalized) else {
            throw invalid(argument, "is not a JSON object")
        }
        let data = try JSONSerialization.data(withJSONObject: normalized, options: [.withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    /// A copy of `value` that JSONSerialization accepts: `nil` becomes `NSNull`, `Date`
    /// an ISO 8601 string, `URL` its absolute string; containers are walked recursively.
    private static func normalize(_ value: Any, path: String) throws -> Any {
        if let unwrapped = unwrapOptional(value) {
            guard let inner = unwrapped.value else { return NSNull() }
            return try normalize(inner, path: path)
        }
        switch value {
        case let dictionary as [String: Any]:
            var out = [String: Any](minimumCapacity: dictionary.count)
            for (key, element) in dictionary {
                out[key] = try normalize(element, path: "\(path).\(key)")
            }
            return out
        case is [AnyHashable: Any]:
            throw invalid(path, "is a dictionary whose keys are not all strings; JSON object keys must be String")
        case let array as [Any]:
            return try array.enumerated().map { index, element in
                try normalize(element, path: "\(path)[\(index)]")
            }
        case let date as Date:
            return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        case let url as URL:
            return url.absoluteString
        default:
            // A scalar: let JSONSerialization itself judge it, without risking its exception.
            guard JSONSerialization.isValidJSONObject([value]) else {
                throw invalid(path, "has type \(type(of: value)) (\(String(describing: value).prefix(40))), which is not JSON")
            }
            return value
        }
    }

    /// `.some(.some(x))`/`.some(nil)` for an `Optional` boxed in `Any`, `nil` for any other value.
    private static func unwrapOptional(_ value: Any) -> (value: Any?, Void)? {
        let mirror = Mirror(reflecting: value)
        guard mirror.displayStyle == .optional else { return nil }
        return (mirror.children.first?.value, ())
    }

    private static func invalid(_ path: String, _ problem: String) -> TributaryError {
        .InvalidJson(message: "invalid JSON in \(path): the value \(problem); use String, Bool, Int, finite Double, "
            + "Date, URL, nil/NSNull, arrays and [String: Any] dictionaries")
    }
}
