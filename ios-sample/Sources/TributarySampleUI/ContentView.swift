// The sample's screen. SwiftUI and UIKit exist only on Apple platforms; on Linux this
// target compiles to nothing.
#if canImport(SwiftUI) && canImport(UIKit)
import SwiftUI
import Tributary

/// Two buttons: track an event, and ask for an upload.
public struct ContentView: View {
    let tributary: Tributary
    @State private var tapped = 0

    public init(tributary: Tributary) {
        self.tributary = tributary
    }

    public var body: some View {
        VStack(spacing: 16) {
            Button("Track \"Button Tapped\"") {
                tapped += 1
                tributary.track("Button Tapped", properties: ["count": tapped])
            }
            Button("Flush") { tributary.flush() }
        }
        .onAppear { tributary.screen("Main") }
    }
}
#endif
