#!/usr/bin/env bash
# Makes the generated UniFFI error enums (FfiTributaryError, FfiTransportError) and their
# converters internal in the generated Swift sources under DIR, so that the public API
# has only the hand-written TributaryError and TributaryTransportError
# (bindings/swift/Sources/Tributary/Errors.swift), whose cases are lowerCamelCase.
# UniFFI's Swift error template capitalises error cases whatever the rename
# (mozilla/uniffi-rs#2262) and declares every type public. Run after
# `uniffi-bindgen-swift --swift-sources` (with bindings/swift/uniffi.toml's renames), by scripts/test-swift.sh and
# scripts/build-xcframework.sh. Fails if a declaration it expects is missing, so a
# change in the generator's output is noticed instead of leaving the types public.
set -euo pipefail
dir="$1"
shopt -s nullglob
files=("$dir"/*.swift)
[ "${#files[@]}" -gt 0 ] || { echo "swift-internal-errors: no .swift file in $dir" >&2; exit 1; }
# UniFFI 0.32 forgets the rename in the constructors' error converter
# (`rustCallWithError(FfiConverterTypeTributaryError_lift)`): point them at the renamed one.
for pair in TributaryError:FfiTributaryError TransportError:FfiTransportError; do
  old="${pair%%:*}" new="${pair#*:}"
  perl -pi -e "s/\\bFfiConverterType${old}_(lift|lower)\\b/FfiConverterType${new}_\$1/g" "${files[@]}"
done
for name in FfiTributaryError FfiTransportError; do
  # `public` then (possibly on the next line) the enum, the converter struct and the
  # lift/lower functions: drop `public`.
  perl -0pi -e "s/\\bpublic\\s+(enum $name\\b)/\$1/g;
                s/\\bpublic\\s+(struct FfiConverterType${name}\\b)/\$1/g;
                s/\\bpublic\\s+(func FfiConverterType${name}_(?:lift|lower)\\b)/\$1/g" "${files[@]}"
  if grep -Eq "public[[:space:]]+(enum $name|struct FfiConverterType$name|func FfiConverterType${name}_)" "${files[@]}" ||
     ! grep -Eq "^enum $name\\b" "${files[@]}"; then
    echo "swift-internal-errors: could not make $name internal in $dir" >&2
    exit 1
  fi
done
