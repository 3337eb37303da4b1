#!/usr/bin/env bash
# The one command that installs what the tests need (idempotently, caches outside the
# repo under $TRIBUTARY_CACHE) and runs every test: Rust (sdk-core, ingest-server,
# end-to-end, analytics.js in headless Chromium, MQTT with mosquitto), Kotlin on the JVM, the Android sample's compile, and Swift in a trixie root.
set -euo pipefail
cd "$(dirname "$0")/.."
export TRIBUTARY_CACHE="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$TRIBUTARY_CACHE"

passed=0
failed=0
failures=()
stage() {
  local name=$1
  shift
  echo
  echo "=== [$(date +%H:%M:%S)] $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "=== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

# Debian packages first: later steps (and the Swift setup) would race for dpkg's lock.
stage "setup: apt packages" scripts/setup-apt.sh

# The Swift root takes minutes to install and needs no CPU-heavy work from us:
# start it first, in the background, and wait for it before the Swift tests.
swift_log="$TRIBUTARY_CACHE/setup-swift.log"
scripts/setup-swift.sh >"$swift_log" 2>&1 &
swift_setup_pid=$!

stage "setup: python (moto, duckdb, pyarrow)" scripts/setup-python.sh
stage "setup: kotlin compiler and JNA" scripts/setup-kotlin.sh
stage "setup: android.jar (API 23)" scripts/setup-android.sh
stage "setup: npm packages for the browser test (playwright-core, analytics-next)" scripts/setup-web.sh

stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
# rustdoc on every public item, with no broken or private intra-doc link.
stage "cargo doc -D warnings" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
# S3 tests must not skip here: the venv above provides moto's server. Nor the
# browser and MQTT tests: setup-apt.sh installs chromium and mosquitto,
# setup-web.sh the npm packages.
stage "cargo test (sdk-core, ingest-server, end-to-end)" env TRIBUTARY_REQUIRE_S3=1 TRIBUTARY_REQUIRE_BROWSER=1 TRIBUTARY_REQUIRE_MQTT=1 cargo test --workspace --no-fail-fast
stage "sdk-core as the mobile library is built (no ureq, trimmed SQLite)" scripts/test-sdk-mobile.sh
stage "mobile library size (stripped release-small x86_64 <= 2 MB)" scripts/bench-sdk-size.sh
stage "kotlin bindings on the JVM" scripts/test-kotlin.sh
stage "android-sample compiles against android.jar" scripts/test-android-sample.sh

swift_setup_ok=0
wait "$swift_setup_pid" && swift_setup_ok=1
show_swift_setup() { tail -n 20 "$swift_log"; [ "$swift_setup_ok" = 1 ]; }
stage "setup: swift root (trixie swiftlang)" show_swift_setup
stage "swift bindings (swift test)" scripts/test-swift.sh

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed stage: %s\n' "${failures[@]}"
fi
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
