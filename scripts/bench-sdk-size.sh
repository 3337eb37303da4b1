#!/usr/bin/env bash
# Size of the shipped SDK library: builds sdk-core with the `release-small`
# profile (opt-level "z", LTO, codegen-units 1), strips a copy of the cdylib
# (bindgen needs the unstripped original) and prints both sizes. With
# BLOAT=1, also installs cargo-bloat (cached in $TRIBUTARY_CACHE) and prints
# the largest crates.
set -euo pipefail
cd "$(dirname "$0")/.."
export TRIBUTARY_CACHE="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
target_dir="${CARGO_TARGET_DIR:-target}"

cargo build --profile release-small -p sdk-core --lib
lib="$target_dir/release-small/libtributary.so"
[ -f "$lib" ] || { echo "no cdylib at $lib" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cp "$lib" "$out/libtributary.so"
strip "$out/libtributary.so"
unstripped=$(stat -c %s "$lib")
stripped=$(stat -c %s "$out/libtributary.so")
echo "sdk-size: unstripped cdylib $unstripped bytes ($((unstripped / 1024)) KiB): $lib"
echo "sdk-size: stripped cdylib   $stripped bytes ($((stripped / 1024)) KiB)"
if [ -f "$target_dir/release-small/libtributary.a" ]; then
  echo "sdk-size: staticlib         $(stat -c %s "$target_dir/release-small/libtributary.a") bytes (before the app's linker drops unused code)"
fi

if [ "${BLOAT:-0}" = 1 ]; then
  bloat_root="$TRIBUTARY_CACHE/cargo-bloat"
  if [ ! -x "$bloat_root/bin/cargo-bloat" ]; then
    cargo install --locked --root "$bloat_root" cargo-bloat
  fi
  PATH="$bloat_root/bin:$PATH" cargo bloat --profile release-small -p sdk-core --lib --crates -n 15
fi
