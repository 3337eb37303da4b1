#!/usr/bin/env bash
# Builds Tributary for Android on a machine with the Android SDK and NDK (this script is
# not run by scripts/test.sh: the CI machine has neither).
#
#   scripts/build-android.sh apk            # the sample app: android-sample/app/build/outputs/apk/debug/
#   scripts/build-android.sh libs OUT_DIR   # for your own app: OUT_DIR/jniLibs/<abi>/libtributary.so
#                                           # and OUT_DIR/kotlin/ (binding + dev.tributary API sources)
#
# Prerequisites (once):
#   rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
#   cargo install cargo-ndk
#   export ANDROID_HOME=$HOME/Android/Sdk   # with an NDK under $ANDROID_HOME/ndk/<version>,
#                                           # or ANDROID_NDK_HOME pointing at one
#   gradle 8.9+ on PATH (or open android-sample/ in Android Studio) for `apk`
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
abis=(arm64-v8a armeabi-v7a x86_64)
rust_targets=(aarch64-linux-android armv7-linux-androideabi x86_64-linux-android)

die() { echo "build-android: $*" >&2; exit 1; }

preflight() {
  command -v cargo-ndk >/dev/null 2>&1 || die "cargo-ndk not found; run: cargo install cargo-ndk"
  local installed
  installed=$(rustup target list --installed 2>/dev/null) || die "rustup not found; install Rust with rustup"
  for t in "${rust_targets[@]}"; do
    grep -qx "$t" <<<"$installed" || die "Rust target $t missing; run: rustup target add ${rust_targets[*]}"
  done
  if [ -z "${ANDROID_NDK_HOME:-}" ] && ! ls -d "${ANDROID_HOME:-/nonexistent}"/ndk/* >/dev/null 2>&1; then
    die "no NDK: set ANDROID_NDK_HOME, or install one with the SDK manager under \$ANDROID_HOME/ndk"
  fi
}

build_libs() {
  local out=$1
  preflight
  rm -rf "$out/jniLibs" "$out/kotlin"
  mkdir -p "$out/jniLibs" "$out/kotlin"
  local targets=()
  for abi in "${abis[@]}"; do targets+=(-t "$abi"); done
  # cargo-ndk strips the libraries it copies into -o; the binding is generated from an
  # unstripped host build (the UniFFI metadata is the same on every target).
  # As shipped: no ureq/rustls (the Kotlin layer sends with HttpURLConnection), trimmed SQLite.
  # shellcheck source=scripts/mobile-build-env.sh
  source scripts/mobile-build-env.sh
  cargo ndk --platform 23 "${targets[@]}" -o "$out/jniLibs" build --release -p sdk-core --lib "${MOBILE_CARGO_FEATURES[@]}"
  scripts/gen-kotlin.sh "$out/kotlin" release >/dev/null
  cp -R bindings/kotlin/src/. bindings/kotlin/android/. "$out/kotlin/"
  echo "native libraries:"
  for abi in "${abis[@]}"; do
    ls -l "$out/jniLibs/$abi/libtributary.so" | awk -v abi="$abi" '{printf "  %-12s %8.0f KiB\n", abi, $5 / 1024}'
  done
  echo "Kotlin sources: $out/kotlin (add to your source set, with implementation(\"net.java.dev.jna:jna:5.17.0@aar\"))"
}

build_apk() {
  preflight
  local gradle=gradle
  [ -x android-sample/gradlew ] && gradle=./gradlew
  command -v "$gradle" >/dev/null 2>&1 || [ -x "android-sample/$gradle" ] ||
    die "gradle not found; install Gradle 8.9+ or open android-sample/ in Android Studio"
  # The app's preBuild runs cargo-ndk and the binding generator itself (app/build.gradle.kts).
  (cd android-sample && "$gradle" :app:assembleDebug)
  ls -l android-sample/app/build/outputs/apk/debug/*.apk
}

case "${1:-}" in
  apk) build_apk ;;
  libs) build_libs "${2:?usage: scripts/build-android.sh libs OUT_DIR}" ;;
  *) die "usage: scripts/build-android.sh apk | libs OUT_DIR" ;;
esac
