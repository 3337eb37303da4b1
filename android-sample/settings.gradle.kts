// The Tributary Android sample. Open this folder in Android Studio, or build with
// `gradle :app:assembleDebug` (see README.md). The Rust core is built for every ABI by
// cargo-ndk from the repository root, one level up.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "tributary-android-sample"
include(":app")
