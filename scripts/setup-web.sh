#!/usr/bin/env bash
# npm packages the browser test needs, installed idempotently into a cache outside
# the repo: playwright-core (drives Debian's chromium; it downloads no browser),
# Segment's @segment/analytics-next and RudderStack's @rudderstack/analytics-js
# (the real browser libraries under test).
# Prints nothing new and touches no network when the pinned versions are present.
set -euo pipefail
cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/npm-web"
# Pinned so that a run tests what the last green run tested.
PLAYWRIGHT_CORE=1.65.1
ANALYTICS_NEXT=1.84.3
RUDDERSTACK=3.34.1
want="playwright-core@$PLAYWRIGHT_CORE @segment/analytics-next@$ANALYTICS_NEXT @rudderstack/analytics-js@$RUDDERSTACK"
mkdir -p "$cache"
if [ "$(cat "$cache/.installed" 2>/dev/null)" != "$want" ]; then
  command -v npm >/dev/null || { echo "npm is missing; install nodejs and npm (Debian: apt-get install -y nodejs npm)" >&2; exit 1; }
  [ -f "$cache/package.json" ] || echo '{"name":"tributary-web-test","private":true}' >"$cache/package.json"
  # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing, but be explicit.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$cache" --no-audit --no-fund --loglevel=error $want
  echo "$want" >"$cache/.installed"
fi
test -f "$cache/node_modules/@segment/analytics-next/dist/umd/index.js" || { echo "analytics-next UMD build missing under $cache" >&2; exit 1; }
test -f "$cache/node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js" || { echo "RudderStack's bundled UMD build missing under $cache" >&2; exit 1; }
test -f "$cache/node_modules/playwright-core/package.json" || { echo "playwright-core missing under $cache" >&2; exit 1; }
echo "npm packages present in $cache: $want"
