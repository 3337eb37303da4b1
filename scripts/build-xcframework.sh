#!/usr/bin/env bash
# Builds bindings/swift/TributaryFFI.xcframework for iOS devices, the iOS simulator and
# macOS, and generates the Swift sources next to it, so that the Swift package (and the
# iOS sample) build in Xcode. macOS only; not run in CI (this project's CI is Linux).
#
# Requirements on the Mac:
#   * Xcode (xcodebuild, lipo) with its command line tools selected (xcode-select -p);
#   * rustup targets: rustup target add aarch64-apple-ios aarch64-apple-ios-sim \
#       x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin
#
# Output:
#   bindings/swift/TributaryFFI.xcframework   static libtributary.a per platform + headers
#   bindings/swift/Sources/Tributary/Generated/tributary.swift
# Package.swift switches to the XCFramework automatically when it exists (and
# TRIBUTARY_LIB_DIR is unset). The static libraries are stripped of debug info
# (`strip -S`); bindgen reads the metadata from the unstripped macOS build first.
set -euo pipefail

if [ "$(uname -s)" != Darwin ]; then
  echo "build-xcframework.sh must run on macOS with Xcode: iOS libraries need Apple's SDKs and" >&2
  echo "xcodebuild -create-xcframework. On Linux, use scripts/test-swift.sh (host cdylib) instead." >&2
  exit 1
fi
for tool in xcodebuild lipo cargo rustup; do
  command -v "$tool" >/dev/null || { echo "missing $tool: install Xcode and rustup" >&2; exit 1; }
done

REPO="$(cd "$(dirname "$0")/.." && pwd -P)"
PKG="$REPO/bindings/swift"
PROFILE="${TRIBUTARY_PROFILE:-release-small}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
TARGETS=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
# The deployment targets must match Package.swift's platforms.
export IPHONEOS_DEPLOYMENT_TARGET=15.0
export MACOSX_DEPLOYMENT_TARGET=12.0

installed="$(rustup target list --installed)"
for target in "${TARGETS[@]}"; do
  grep -qx "$target" <<<"$installed" || { echo "missing rust target: rustup target add $target" >&2; exit 1; }
done

cd "$REPO"
# As shipped: no ureq/rustls (the Swift layer sends with URLSession), trimmed SQLite.
# shellcheck source=scripts/mobile-build-env.sh
source scripts/mobile-build-env.sh
for target in "${TARGETS[@]}"; do
  echo "== cargo build --profile $PROFILE --target $target ${MOBILE_CARGO_FEATURES[*]}"
  cargo build -p sdk-core --lib --profile "$PROFILE" --target "$target" "${MOBILE_CARGO_FEATURES[@]}"
done
lib() { echo "$CARGO_TARGET_DIR/$1/$PROFILE/libtributary.$2"; }

echo "== generating Swift sources, header and modulemap"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cargo build -p uniffi-bindgen --bin uniffi-bindgen-swift
BINDGEN="$CARGO_TARGET_DIR/debug/uniffi-bindgen-swift"
META_LIB="$(lib aarch64-apple-darwin dylib)" # unstripped, carries the UniFFI metadata
rm -rf "$PKG/Sources/Tributary/Generated"
"$BINDGEN" -c "$PKG/uniffi.toml" "$META_LIB" "$PKG/Sources/Tributary/Generated" --swift-sources
# The generated errors become internal; the public ones are hand-written (Errors.swift).
"$REPO/scripts/swift-internal-errors.sh" "$PKG/Sources/Tributary/Generated"
# Headers go in a TributaryFFI/ subfolder so the module map does not collide with
# other XCFrameworks' module maps in Xcode's shared include directory.
HEADERS="$WORK/include/TributaryFFI"
"$BINDGEN" -c "$PKG/uniffi.toml" "$META_LIB" "$HEADERS" \
  --headers --modulemap --module-name TributaryFFI --modulemap-filename module.modulemap
# Keep Package.swift's Linux system-library target in step with the headers.
rm -rf "$PKG/Sources/TributaryFFI"
cp -R "$HEADERS" "$PKG/Sources/TributaryFFI"

echo "== lipo: one simulator library and one macOS library"
mkdir -p "$WORK/ios" "$WORK/ios-sim" "$WORK/macos"
cp "$(lib aarch64-apple-ios a)" "$WORK/ios/libtributary.a"
lipo -create "$(lib aarch64-apple-ios-sim a)" "$(lib x86_64-apple-ios a)" -output "$WORK/ios-sim/libtributary.a"
lipo -create "$(lib aarch64-apple-darwin a)" "$(lib x86_64-apple-darwin a)" -output "$WORK/macos/libtributary.a"
for dir in ios ios-sim macos; do
  strip -S "$WORK/$dir/libtributary.a"
done

echo "== xcodebuild -create-xcframework"
rm -rf "$PKG/TributaryFFI.xcframework"
xcodebuild -create-xcframework \
  -library "$WORK/ios/libtributary.a" -headers "$WORK/include" \
  -library "$WORK/ios-sim/libtributary.a" -headers "$WORK/include" \
  -library "$WORK/macos/libtributary.a" -headers "$WORK/include" \
  -output "$PKG/TributaryFFI.xcframework"

echo "built $PKG/TributaryFFI.xcframework:"
du -sh "$PKG/TributaryFFI.xcframework"/*/libtributary.a
echo "next: open ios-sample (see bindings/swift/README.md), or run 'swift build' in bindings/swift"
