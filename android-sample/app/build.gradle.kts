// The sample app. Two Gradle tasks run before every build:
//  - cargoNdkBuild: builds sdk-core's cdylib (libtributary.so) for arm64-v8a, armeabi-v7a
//    and x86_64 with cargo-ndk, into build/rustJniLibs/<abi>/ (packaged as jniLibs);
//  - generateTributaryKotlin: generates the UniFFI Kotlin binding from a host build of the
//    same crate (library mode needs an unstripped library; the metadata is the same on
//    every target) with ../../scripts/gen-kotlin.sh.
// The hand-written API (bindings/kotlin/src, package dev.tributary) and the generated
// binding (dev.tributary.ffi) are compiled into the app as sources; JNA comes as an AAR.
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

val repoRoot: File = rootProject.projectDir.parentFile
val rustJniLibs = layout.buildDirectory.dir("rustJniLibs")
val generatedKotlin = layout.buildDirectory.dir("generated/tributary-kotlin")
val rustAbis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")
// `-PrustProfile=debug` for faster native builds while iterating.
val rustProfile: String = (findProperty("rustProfile") as String?) ?: "release"

android {
    namespace = "dev.tributary.sample"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.tributary.sample"
        minSdk = 23
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk {
            abiFilters += rustAbis
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = true
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets["main"].apply {
        java.srcDirs(
            "src/main/kotlin",
            File(repoRoot, "bindings/kotlin/src"),
            File(repoRoot, "bindings/kotlin/android"),
            generatedKotlin.get().asFile,
        )
        jniLibs.srcDirs(rustJniLibs.get().asFile)
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // UniFFI's generated code calls the Rust library through JNA (>= 5.12); the AAR
    // carries JNA's native dispatch library for every Android ABI.
    implementation("net.java.dev.jna:jna:5.17.0@aar")
}

val cargoNdkBuild by tasks.registering(Exec::class) {
    description = "Builds libtributary.so for ${rustAbis.joinToString()} with cargo-ndk"
    group = "rust"
    workingDir = repoRoot
    val args = mutableListOf("cargo", "ndk", "--platform", "23", "-o", rustJniLibs.get().asFile.path)
    rustAbis.forEach { args += listOf("-t", it) }
    // As shipped: no ureq/rustls (the Kotlin layer sends with HttpURLConnection), and
    // SQLite without the extensions the SDK does not use (scripts/mobile-build-env.sh).
    args += listOf("build", "-p", "sdk-core", "--lib", "--no-default-features")
    if (rustProfile == "release") args += "--release"
    commandLine(listOf("bash", "-c", "source scripts/mobile-build-env.sh && exec \"\$@\"", "cargo-ndk") + args)
    inputs.dir(File(repoRoot, "sdk-core/src"))
    inputs.file(File(repoRoot, "scripts/mobile-build-env.sh"))
    inputs.file(File(repoRoot, "sdk-core/Cargo.toml"))
    inputs.file(File(repoRoot, "Cargo.lock"))
    outputs.dir(rustJniLibs)
}

val generateTributaryKotlin by tasks.registering(Exec::class) {
    description = "Generates the UniFFI Kotlin binding (dev.tributary.ffi) from a host build of sdk-core"
    group = "rust"
    workingDir = repoRoot
    commandLine("bash", "scripts/gen-kotlin.sh", generatedKotlin.get().asFile.path)
    inputs.dir(File(repoRoot, "sdk-core/src"))
    inputs.file(File(repoRoot, "bindings/kotlin/uniffi.toml"))
    outputs.dir(generatedKotlin)
}

tasks.named("preBuild") {
    dependsOn(cargoNdkBuild, generateTributaryKotlin)
}
