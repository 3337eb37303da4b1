#!/usr/bin/env bash
# Runs the end-to-end demo: the ingest server, three flaky devices, and a count of
# what was recorded and stored. Extra arguments go to the demo (e.g. --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -p tests --bin demo -- "$@"
