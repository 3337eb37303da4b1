// The iOS app entry point (built by Xcode, see ../README.md): one setup call, and the
// registration of the deferred-upload task the library schedules.
import SwiftUI
import Tributary
import TributarySampleCore
import TributarySampleUI

@main
struct TributarySampleApp: App {
    let tributary: Tributary

    init() {
        BackgroundTaskUploads.register()
        do {
            let storage = try Tributary.defaultStorageDirectory()
            tributary = try SampleConfiguration.fromBundle(storageDirectory: storage).start()
        } catch {
            // A bad Info.plist value is a developer error: show the SDK's message.
            fatalError("Tributary could not start: \(error)")
        }
    }

    var body: some Scene {
        WindowGroup { ContentView(tributary: tributary) }
    }
}
