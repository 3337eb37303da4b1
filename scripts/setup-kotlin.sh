#!/usr/bin/env bash
# Installs what the Kotlin tests need, idempotently:
#   - the Kotlin compiler 2.4.20 from npm (`kotlin-compiler`), unpacked under
#     $TRIBUTARY_CACHE/kotlin-compiler-2.4.20 (kotlinc, kotlin-stdlib.jar, kotlin-test.jar);
#   - JNA from Debian's libjna-java (/usr/share/java/jna.jar; UniFFI needs JNA >= 5.12);
#   - a Java 17 runtime.
# Works unattended (CI=true, no stdin). Prints the paths it set up.
set -euo pipefail
KOTLIN_VERSION=2.4.20
cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
dest="$cache/kotlin-compiler-$KOTLIN_VERSION"
mkdir -p "$cache"

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# Debian packages: JNA and, if no java is on PATH, a headless JDK 17.
need=()
dpkg-query -W -f='${Status}' libjna-java 2>/dev/null | grep -q "install ok installed" || need+=(libjna-java)
if ! command -v java >/dev/null 2>&1; then
  need+=(openjdk-17-jdk-headless)
fi
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only if the install cannot find the packages without it.
  if ! sudo_if_needed apt-get install -y -qq "${need[@]}" </dev/null; then
    sudo_if_needed apt-get update -qq </dev/null
    sudo_if_needed apt-get install -y -qq "${need[@]}" </dev/null
  fi
fi
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  echo "setup-kotlin: Java 17 or newer is required, found: $(java -version 2>&1 | head -n 1)" >&2
  echo "setup-kotlin: install openjdk-17-jdk-headless and put it first on PATH" >&2
  exit 1
fi
[ -f /usr/share/java/jna.jar ] || { echo "setup-kotlin: /usr/share/java/jna.jar missing after installing libjna-java" >&2; exit 1; }

# Kotlin compiler from npm: `npm pack` fetches the tarball without a node_modules tree.
if [ ! -x "$dest/bin/kotlinc" ]; then
  tmp=$(mktemp -d "$cache/kotlin-dl.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" </dev/null >/dev/null)
  tarball=$(ls "$tmp"/kotlin-compiler-*.tgz)
  mkdir -p "$tmp/x"
  tar -xzf "$tarball" -C "$tmp/x"
  chmod +x "$tmp/x/package/bin/"* 2>/dev/null || true
  rm -rf "$dest"
  # Rename into place last, so an interrupted run never leaves a half-unpacked compiler.
  mv "$tmp/x/package" "$dest"
fi
for jar in kotlin-stdlib.jar kotlin-test.jar; do
  [ -f "$dest/lib/$jar" ] || { echo "setup-kotlin: $dest/lib/$jar missing; delete $dest and rerun" >&2; exit 1; }
done
echo "kotlinc: $dest/bin/kotlinc ($KOTLIN_VERSION); jna: /usr/share/java/jna.jar; java: $(java -version 2>&1 | head -n 1)"
