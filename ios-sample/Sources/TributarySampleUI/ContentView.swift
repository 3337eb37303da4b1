// The sample's screen. SwiftUI and UIKit exist only on Apple platforms; on Linux this
// target compiles to nothing, and the logic it calls is tested in TributarySampleCore.
#if canImport(SwiftUI) && canImport(UIKit)
import SwiftUI
import Tributary
import TributarySampleCore
import UIKit

/// Publishes the session's state to SwiftUI on the main actor.
@MainActor
public final class SampleViewModel: ObservableObject {
    @Published public private(set) var state: SampleState
    public let session: SampleSession

    public init(session: SampleSession) {
        self.session = session
        self.state = session.state
        session.observe { [weak self] state in
            guard let model = self else { return }
            Task { @MainActor in model.state = state }
        }
    }
}

/// Four actions: track, go offline, flush, and the stats view.
public struct ContentView: View {
    @ObservedObject var model: SampleViewModel

    public init(model: SampleViewModel) {
        self.model = model
    }

    public var body: some View {
        NavigationView {
            Form {
                Section("Actions") {
                    Button("Track \"Button Tapped\"") { model.session.trackButtonTapped() }
                    Toggle("Go offline", isOn: Binding(
                        get: { model.state.forcedOffline },
                        set: { model.session.setForcedOffline($0) }
                    ))
                    Button("Flush") { model.session.flushButtonTapped() }
                }
                Section("Stats") {
                    row("Network", model.state.effectiveOnline ? "online" : "offline")
                    row("Tracked", "\(model.state.tracked)")
                    row("Queued", "\(model.state.stats.queuedEvents) (\(model.state.stats.queuedBytes) B)")
                    row("In flight", "\(model.state.stats.inFlightEvents)")
                    row("Uploaded", "\(model.state.stats.uploadedEvents)")
                    row("Retries", "\(model.state.stats.retries)")
                    if let error = model.state.stats.lastError { row("Last error", error) }
                    Button("Refresh stats") { model.session.refreshStats() }
                }
                if let message = model.state.message {
                    Section("Status") { Text(message).font(.footnote) }
                }
            }
            .navigationTitle("Tributary")
        }
    }

    private func row(_ title: String, _ value: String) -> some View {
        HStack {
            Text(title)
            Spacer()
            Text(value).foregroundColor(.secondary)
        }
    }
}

extension DeviceContext {
    /// ``DeviceContext/current(bundle:)`` plus what only UIKit knows: model and screen.
    @MainActor
    public static func currentWithDevice() -> DeviceContext {
        var context = DeviceContext.current()
        let device = UIDevice.current
        let screen = UIScreen.main
        context.deviceManufacturer = "Apple"
        context.deviceModel = device.model
        context.osName = device.systemName
        context.osVersion = device.systemVersion
        context.screenWidth = UInt32(screen.bounds.width)
        context.screenHeight = UInt32(screen.bounds.height)
        context.screenDensity = Double(screen.scale)
        return context
    }
}
#endif
