#!/usr/bin/env bash
# sdk-core built as the mobile library is (scripts/mobile-build-env.sh: no ureq/rustls,
# SQLite without the extensions the SDK does not use): clippy for that feature set, then
# the tests that need no built-in transport (a real loopback server, reached through a
# Transport implemented in the test), so the trimmed SQLite and the feature-less build
# are exercised for real. The workspace `cargo test` covers the default build.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/mobile-build-env.sh
source scripts/mobile-build-env.sh
cargo clippy -p sdk-core --all-targets "${MOBILE_CARGO_FEATURES[@]}" -- -D warnings
cargo test -p sdk-core "${MOBILE_CARGO_FEATURES[@]}" --test transport
