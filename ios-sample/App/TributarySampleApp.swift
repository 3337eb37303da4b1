// The iOS app entry point (built by Xcode, see ../README.md): creates the SDK, starts
// NWPathMonitor, and flushes inside a background task when the app enters the background.
import SwiftUI
import Tributary
import TributarySampleCore
import TributarySampleUI
import UIKit

@main
struct TributarySampleApp: App {
    @StateObject private var model: SampleViewModel

    init() {
        let session: SampleSession
        do {
            let storage = try Tributary.defaultStorageDirectory()
            let configuration = SampleConfiguration.fromBundle(storageDirectory: storage)
            let tributary = try Tributary(config: configuration.tributaryConfig, logger: SystemLogger(minimumLevel: .debug))
            tributary.setContext(.currentWithDevice())
            session = SampleSession(
                tributary: tributary,
                reachability: PathMonitorReachability(),
                backgroundTasks: UIKitBackgroundTasks()
            )
        } catch {
            // A bad Info.plist value is a developer error: show the SDK's message.
            fatalError("Tributary could not start: \(error)")
        }
        session.start()
        _model = StateObject(wrappedValue: SampleViewModel(session: session))
    }

    var body: some Scene {
        WindowGroup {
            ContentView(model: model)
                .onReceive(NotificationCenter.default.publisher(for: UIApplication.didEnterBackgroundNotification)) { _ in
                    model.session.didEnterBackground()
                }
        }
    }
}
