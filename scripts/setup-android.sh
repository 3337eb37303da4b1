#!/usr/bin/env bash
# Fetches the Android API 23 classes (android.jar) for compiling android-sample's Kotlin
# sources here, without installing anything system-wide: Debian bookworm has no
# android-sdk-platform-23, bullseye does, so we point apt at a private bullseye sources
# list and private package lists, `apt-get download` the packages and `dpkg -x` them into
# a scratch dir. android-sdk-platform-23 holds the platform's data; its dependency
# libandroid-23-java holds android.jar itself. The jar is copied to
#   $TRIBUTARY_CACHE/android-23/android.jar
# Idempotent, unattended (CI=true, no stdin). Needs network access to deb.debian.org.
set -euo pipefail
cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
dest="$cache/android-23"
jar="$dest/android.jar"
if [ -s "$jar" ]; then
  echo "android.jar (API 23): $jar"
  exit 0
fi

work="$cache/android-apt"
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs"
echo "deb http://deb.debian.org/debian bullseye main" >"$work/sources.list"
# Every option keeps apt away from the system's own lists, sources and cache.
apt_opts=(
  -o "Dir::Etc::sourcelist=$work/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache::archives=$work/archives"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Get::List-Cleanup=0"
  -o "Acquire::Languages=none"
  -o "Debug::NoLocking=1"
)
# As root, apt drops to the _apt user, which cannot write into a private cache dir.
[ "$(id -u)" -eq 0 ] && apt_opts+=(-o "APT::Sandbox::User=root")
export DEBIAN_FRONTEND=noninteractive
apt-get "${apt_opts[@]}" update -qq </dev/null
# apt-get download writes into the current directory.
(cd "$work/debs" && apt-get "${apt_opts[@]}" download android-sdk-platform-23 libandroid-23-java </dev/null)

tmp=$(mktemp -d "$cache/android-x.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for deb in "$work"/debs/*.deb; do
  dpkg -x "$deb" "$tmp"
done
found=$(find "$tmp" -name android.jar \( -type f -o -type l \) | head -n 1)
[ -n "$found" ] || { echo "setup-android: no android.jar in $(ls "$work"/debs)" >&2; exit 1; }
found=$(readlink -f "$found")
[ -f "$found" ] || { echo "setup-android: android.jar is a dangling link in $(ls "$work"/debs)" >&2; exit 1; }
deb=$(ls "$work"/debs/libandroid-23-java_*.deb)
mkdir -p "$dest"
cp "$found" "$jar.tmp"
mv "$jar.tmp" "$jar"
rm -rf "$work/debs" "$work/archives"
echo "android.jar (API 23): $jar ($(du -h "$jar" | cut -f1), from $(basename "$deb"))"
