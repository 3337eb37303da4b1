#!/usr/bin/env bash
# Ingest-server benchmark: end-to-end throughput (loopback HTTP, gzip batches of 100
# ~300-byte events -> NDJSON.gz on local disk), ratio to a minimal hyper server that
# only reads and discards bodies, p50/p99 latency at half the max rate, peak RSS, and
# dedupe index bytes per million ids. Bounded: about 1-2 minutes after the build.
#
# Knobs (environment): BENCH_SECONDS (default 8) per closed-loop phase,
# BENCH_CONNECTIONS (64), BENCH_BATCHES (40000 pre-built batches of 100 events).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p ingest-server --bench ingest "$@"
