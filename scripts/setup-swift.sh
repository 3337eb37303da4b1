#!/usr/bin/env bash
# Installs a Swift 6 toolchain for the Swift binding tests: Debian bookworm has no Swift,
# and trixie's `swiftlang` needs glibc >= 2.38, so it goes into a separate trixie root
# (debootstrap) under $TRIBUTARY_CACHE, outside the repo. scripts/test-swift.sh runs
# `swift test` inside it with chroot.
#
# Idempotent and safe to rerun after an interrupted run: each step leaves a marker only
# when it has finished, and a root without the first marker is rebuilt from scratch.
# Needs root (debootstrap, chroot, mount). Works without a terminal (CI=true, no stdin).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
CACHE="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
ROOT="$CACHE/swift-root"
MIRROR="${TRIBUTARY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BOOTSTRAPPED="$ROOT/.tributary-debootstrap-done"
READY="$ROOT/.tributary-swift-ready"
# Packages inside the root: the toolchain, and zlib's header for the tests' gzip decoding.
ROOT_PACKAGES=(swiftlang zlib1g-dev ca-certificates)

log() { echo "[setup-swift $(date +%H:%M:%S)] $*"; }

if [ "$(id -u)" != 0 ]; then
  echo "setup-swift.sh needs root (debootstrap, chroot and mount); run it as root or in CI's root container" >&2
  exit 1
fi

# Anything still mounted inside the root (a killed test run) must go before we touch it:
# deleting the root through a bind mount of the repository would delete the repository.
unmount_all_under_root() {
  local m
  if [ -d "$ROOT" ]; then
    # Deepest first.
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m"
    done < <(awk -v r="$(realpath "$ROOT")" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r)
    if awk -v r="$(realpath "$ROOT")" 'index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
      echo "something is still mounted under $ROOT; unmount it and rerun" >&2
      exit 1
    fi
  fi
}

# swift needs /proc inside the root (it finds its libraries through /proc/self/exe).
proc_mounted=0
mount_proc() {
  if [ "$proc_mounted" = 0 ]; then
    mount -t proc proc "$ROOT/proc"
    proc_mounted=1
  fi
}
unmount_proc() {
  if [ "$proc_mounted" = 1 ]; then
    umount "$ROOT/proc" 2>/dev/null || umount -l "$ROOT/proc" 2>/dev/null || true
    proc_mounted=0
  fi
}
trap unmount_proc EXIT
trap 'exit 130' INT TERM HUP # so that a signal also runs the EXIT trap

if [ -f "$READY" ] && [ -d "$ROOT/proc" ] && mount_proc && version="$(chroot "$ROOT" swift --version 2>&1)"; then
  log "swift root ready at $ROOT: $(head -n 1 <<<"$version")"
  exit 0
fi
unmount_proc

start=$SECONDS
mkdir -p "$CACHE"
unmount_all_under_root

# setup-apt.sh may run apt at the same time (scripts/test.sh starts us in parallel): wait
# for dpkg's lock, and retry, since `apt-get update` can also lose the race for the lists lock.
attempt=1
while ! command -v debootstrap >/dev/null 2>&1; do
  log "installing debootstrap on the host (attempt $attempt)"
  if apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap; then
    break
  fi
  if [ "$attempt" -ge 5 ]; then
    echo "could not install debootstrap with apt-get; install it and rerun" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 10
done

if [ ! -f "$BOOTSTRAPPED" ]; then
  if [ -e "$ROOT" ]; then
    log "removing the unfinished root from an earlier run"
    rm -rf --one-file-system "$ROOT"
  fi
  log "debootstrap trixie (minbase) into $ROOT"
  debootstrap --variant=minbase trixie "$ROOT" "$MIRROR"
  touch "$BOOTSTRAPPED"
fi

# The root's apt needs DNS, and must not try to start services.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

mount_proc

log "apt-get install ${ROOT_PACKAGES[*]} inside the root (a ~450 MB download)"
# dpkg --configure -a finishes a previous run's half-configured packages.
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive dpkg --configure -a
# Retried: a mirror hiccup during a 450 MB download should not fail CI.
for attempt in 1 2 3; do
  if chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${ROOT_PACKAGES[@]}"; then
    break
  fi
  if [ "$attempt" = 3 ]; then
    echo "apt-get install ${ROOT_PACKAGES[*]} failed 3 times inside $ROOT; check the network and rerun" >&2
    exit 1
  fi
  log "apt-get failed inside the root; retrying in 10 s"
  sleep 10
done
chroot "$ROOT" apt-get clean

version="$(chroot "$ROOT" swift --version 2>&1 | head -n 1)"
echo "$version" >"$READY"
log "swift root ready at $ROOT in $((SECONDS - start)) s: $version"
