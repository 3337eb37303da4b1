#!/usr/bin/env bash
# Size of the shipped SDK library: builds sdk-core as the mobile library is built
# (scripts/mobile-build-env.sh: no ureq/rustls, the platform's HTTP stack through the
# Transport trait, SQLite without the extensions the SDK does not use) with the
# `release-small` profile (opt-level "z", LTO, codegen-units 1), strips a copy of the
# cdylib (bindgen needs the unstripped original) and prints both sizes, then checks the
# stripped size against the 2 MB budget (2,000,000 bytes; exit 1 over it).
#
#   BLOAT=1   also list the sizes by crate with cargo-bloat (installed from crates.io
#             into $TRIBUTARY_CACHE/cargo-bloat on first use). cargo-bloat counts the
#             .text section only; the bundled SQLite (C) shows up as [Unknown].
#   UREQ=1    also build and measure the Rust-callers' library (default features, with
#             the built-in ureq transport), for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
export TRIBUTARY_CACHE="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
target_dir="${CARGO_TARGET_DIR:-target}"
budget=2000000
# shellcheck source=scripts/mobile-build-env.sh
source scripts/mobile-build-env.sh

measure() { # LABEL CARGO_ARGS...
  local label=$1
  shift
  cargo build --profile release-small -p sdk-core --lib "$@"
  local lib="$target_dir/release-small/libtributary.so"
  [ -f "$lib" ] || { echo "no cdylib at $lib" >&2; exit 1; }
  local out
  out="$(mktemp -d)"
  cp "$lib" "$out/libtributary.so"
  strip "$out/libtributary.so"
  unstripped=$(stat -c %s "$lib")
  stripped=$(stat -c %s "$out/libtributary.so")
  rm -rf "$out"
  echo "sdk-size [$label]: unstripped cdylib $unstripped bytes ($((unstripped / 1024)) KiB): $lib"
  echo "sdk-size [$label]: stripped cdylib   $stripped bytes ($((stripped / 1024)) KiB)"
}

if [ "${UREQ:-0}" = 1 ]; then
  # Default features and rusqlite's default SQLite options, as Rust callers get them.
  LIBSQLITE3_FLAGS="" measure "rust callers: ureq transport, full SQLite"
  ureq_stripped=$stripped
fi

measure "mobile: platform transport" "${MOBILE_CARGO_FEATURES[@]}"
mobile_stripped=$stripped
if [ -f "$target_dir/release-small/libtributary.a" ]; then
  echo "sdk-size [mobile]: staticlib $(stat -c %s "$target_dir/release-small/libtributary.a") bytes (before the app's linker drops unused code)"
fi

if [ "${BLOAT:-0}" = 1 ]; then
  bloat_root="$TRIBUTARY_CACHE/cargo-bloat"
  if [ ! -x "$bloat_root/bin/cargo-bloat" ]; then
    cargo install --locked --root "$bloat_root" cargo-bloat
  fi
  PATH="$bloat_root/bin:$PATH" cargo bloat --profile release-small -p sdk-core --lib \
    "${MOBILE_CARGO_FEATURES[@]}" --crates -n 20
fi

[ -n "${ureq_stripped:-}" ] && echo "sdk-size: the platform transport and trimmed SQLite save $((ureq_stripped - mobile_stripped)) bytes"
if [ "$mobile_stripped" -gt "$budget" ]; then
  echo "sdk-size: FAIL: the stripped mobile library is $mobile_stripped bytes, over the budget of $budget" >&2
  exit 1
fi
echo "sdk-size: OK: the stripped mobile library is $mobile_stripped bytes, within the budget of $budget"
