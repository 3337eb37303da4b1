#!/usr/bin/env bash
# Generates the Kotlin binding (package dev.tributary.ffi) from sdk-core's cdylib.
#
#   scripts/gen-kotlin.sh OUT_DIR [debug|release]
#
# Builds sdk-core (cdylib libtributary.so, as shipped: scripts/mobile-build-env.sh) and the workspace's uniffi-bindgen, then runs
# `uniffi-bindgen generate <lib> --language kotlin` in library mode. Library mode reads the
# UniFFI metadata from the UNSTRIPPED library, so generate first and strip only the copy
# you ship. The output is not committed: each build and test run regenerates it, so the
# binding can never be stale. Prints the path of the library it used.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: scripts/gen-kotlin.sh OUT_DIR [debug|release]}"
profile="${2:-debug}"
target="${CARGO_TARGET_DIR:-$repo/target}"
cd "$repo"

profile_flag=()
[ "$profile" = release ] && profile_flag=(--release)
# Built as the mobile library is (no ureq/rustls; the Kotlin layer sends through its
# HttpURLConnection Transport), so the JVM tests exercise what ships.
# shellcheck source=scripts/mobile-build-env.sh
source scripts/mobile-build-env.sh
cargo build --quiet -p sdk-core --lib "${profile_flag[@]}" "${MOBILE_CARGO_FEATURES[@]}"
cargo build --quiet -p uniffi-bindgen --bin uniffi-bindgen
lib="$target/$profile/libtributary.so"
[ -f "$lib" ] || { echo "gen-kotlin: $lib was not built" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
"$target/debug/uniffi-bindgen" generate "$lib" --language kotlin --no-format \
  --config "$repo/bindings/kotlin/uniffi.toml" --out-dir "$out"
[ -f "$out/dev/tributary/ffi/tributary.kt" ] || {
  echo "gen-kotlin: no dev/tributary/ffi/tributary.kt under $out" >&2
  exit 1
}
echo "$lib"
