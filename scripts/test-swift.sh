#!/usr/bin/env bash
# Builds the sdk-core cdylib on the host, regenerates the Swift bindings from it, and runs
# `swift test` for bindings/swift and ios-sample inside the trixie root made by
# scripts/setup-swift.sh. Exits non-zero on any failure.
#
# The generated files (Sources/TributaryFFI, Sources/Tributary/Generated) are gitignored
# and rewritten on every run, so a stale binding can never be tested.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd -P)"
CACHE="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
ROOT="$CACHE/swift-root"
PKG="$REPO/bindings/swift"
SAMPLE="$REPO/ios-sample"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
mkdir -p "$CARGO_TARGET_DIR"
# Absolute, because cargo and bindgen run from $REPO below.
CARGO_TARGET_DIR="$(cd "$CARGO_TARGET_DIR" && pwd -P)"
LIB_DIR="$CARGO_TARGET_DIR/debug"

log() { echo "[test-swift $(date +%H:%M:%S)] $*"; }

if [ "$(id -u)" != 0 ]; then
  echo "test-swift.sh needs root (chroot and bind mounts)" >&2
  exit 1
fi
if [ ! -f "$ROOT/.tributary-swift-ready" ]; then
  echo "no Swift root at $ROOT: run scripts/setup-swift.sh first" >&2
  exit 1
fi

start=$SECONDS
# TRIBUTARY_SWIFT_SKIP_CARGO=1 reuses the library already built in $CARGO_TARGET_DIR
# (for iterating on Swift code only; CI always rebuilds).
if [ "${TRIBUTARY_SWIFT_SKIP_CARGO:-0}" != 1 ]; then
  # sdk-core as shipped (scripts/mobile-build-env.sh: no ureq/rustls, trimmed SQLite):
  # the Swift layer sends through its URLSession Transport, which the tests exercise.
  log "cargo build -p sdk-core (debug, as shipped) -p uniffi-bindgen"
  (
    cd "$REPO"
    # shellcheck source=scripts/mobile-build-env.sh
    source scripts/mobile-build-env.sh
    cargo build -p sdk-core --lib "${MOBILE_CARGO_FEATURES[@]}"
    cargo build -p uniffi-bindgen --bins
  )
fi
LIB="$LIB_DIR/libtributary.so"
BINDGEN="$CARGO_TARGET_DIR/debug/uniffi-bindgen-swift"

log "generating the Swift bindings from $LIB"
rm -rf "$PKG/Sources/TributaryFFI" "$PKG/Sources/Tributary/Generated"
# uniffi-bindgen runs `cargo metadata`, so run it inside the workspace.
(
  cd "$REPO"
  "$BINDGEN" -c "$PKG/uniffi.toml" "$LIB" "$PKG/Sources/TributaryFFI" \
    --headers --modulemap --module-name TributaryFFI --modulemap-filename module.modulemap
  "$BINDGEN" -c "$PKG/uniffi.toml" "$LIB" "$PKG/Sources/Tributary/Generated" --swift-sources
)
# The generated errors become internal; the public ones are hand-written (Errors.swift).
"$REPO/scripts/swift-internal-errors.sh" "$PKG/Sources/Tributary/Generated"

# Mount what the root needs, at the same absolute paths as on the host, and always
# unmount (deepest first) however this script ends.
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" || true
  done
}
trap cleanup EXIT
# On a signal, stop the running `swift test` (timeout forwards it), then exit, which
# runs the EXIT trap and unmounts.
child=0
on_signal() {
  if [ "$child" != 0 ]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit 130
}
trap on_signal INT TERM HUP
bind() { # bind SOURCE: mounts SOURCE at the same path inside the root
  mkdir -p "$ROOT$1"
  mount --bind "$1" "$ROOT$1"
  mounted+=("$ROOT$1")
}
mount -t proc proc "$ROOT/proc"
mounted+=("$ROOT/proc")
bind /dev
bind "$REPO"
case "$LIB_DIR/" in
  "$REPO"/*) ;; # already visible through the repository
  *) bind "$LIB_DIR" ;;
esac

in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    TRIBUTARY_LIB_DIR="$LIB_DIR" "$@"
}

status=0
for pkg in "$PKG" "$SAMPLE"; do
  log "swift test in $pkg"
  # Bounded: a hung test (or core) fails the run instead of stalling CI.
  # Run in the background and `wait`, so that a signal is handled at once.
  in_root timeout --kill-after=30 "${TRIBUTARY_SWIFT_TEST_TIMEOUT:-900}" /bin/sh -c "cd '$pkg' && swift test" &
  child=$!
  if ! wait "$child"; then
    log "swift test FAILED in $pkg"
    status=1
  fi
  child=0
done
log "done in $((SECONDS - start)) s"
exit "$status"
