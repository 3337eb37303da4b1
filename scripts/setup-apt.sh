#!/usr/bin/env bash
# Debian packages the tests need. Idempotent: installs only what is missing.
set -euo pipefail
need=()
# chromium: the browser test (headless, driven by playwright-core); mosquitto: the MQTT source's test broker.
for pkg in debootstrap libjna-java strace chromium mosquitto; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
echo "apt packages present: debootstrap libjna-java strace chromium mosquitto, and java: $(java -version 2>&1 | head -n 1)"
