#!/usr/bin/env bash
# Distributed-mode benchmark: the same gzip batch load through the single process
# (local log) and through one front-end, a single-node JetStream and one writer;
# events/s and CPU per event per role, measured in the same run, and the time a
# writer needs to load a partition's dedupe keys on takeover (per million keys).
# Bounded: about 1 minute after the build. Needs scripts/setup-python.sh (nats-server).
#
# Knobs (environment): BENCH_SECONDS (8), BENCH_CONNECTIONS (32), BENCH_BATCHES
# (20000), BENCH_PARTITIONS (4), BENCH_NATS_NODES (1; 3 runs R3), BENCH_NATS_SYNC (always|default),
# BENCH_TAKEOVER_KEYS (1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh >/dev/null
exec cargo bench -p ingest-server --bench cluster "$@"
