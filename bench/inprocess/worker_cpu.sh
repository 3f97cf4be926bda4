#!/bin/bash
# CPU time of one in-process worker per request, for A/B comparisons that a busy machine
# cannot spoil as much as throughput: the worker (serve.py) pinned to CPU 0, bench/build/origin
# and h2load pinned to CPU 1, utime+stime of the worker read from /proc around the measured run.
#
#   bench/inprocess/worker_cpu.sh N C M         e.g. 30000 32 16 (W1 shape), 30000 1 100 (W2)
#   URLPATH=/bytes/67108864 ... 8 4 1           W3 shape (us/req is then per 64 MiB response)
#   URLPATH=/up H2EXTRA="-d FILE" ... 32 4 1    W4 shape (FILE: the body to upload)
#   ROOT=/other/checkout ...                    measure another tree's sources (A/B pairs)
#   PROF=file.prof ... / STRACE=1 ...           a cProfile of the run / syscall counts (strace -c)
#
# Needs bench/build/origin (bench/run builds it), h2load and taskset. Prints h2load's summary
# line, the worker's CPU ticks and us/req; run pairs alternately and compare medians.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$(dirname "$HERE")")"
ROOT="${ROOT:-$REPO}"
N=${1:-30000}; C=${2:-32}; M=${3:-16}
WORK="$(mktemp -d -t h2proxy-workercpu.XXXXXX)"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
PY="$REPO/.venv/bin/python"
"$PY" -m h2proxy_tools.devcert "$WORK/cert" > /dev/null
taskset -c 1 "$REPO/bench/build/origin" 0 > "$WORK/origin.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q 127.0.0.1 "$WORK/origin.log" && break; sleep 0.05; done
OPORT=$(grep -o '127.0.0.1:[0-9]*' "$WORK/origin.log" | head -1 | cut -d: -f2)
cat > "$WORK/h2proxy.yaml" <<YAML
workers: 1
listeners:
- {name: bench, address: 127.0.0.1, port: 0, tls: {certificates: [{cert: $WORK/cert/cert.pem, key: $WORK/cert/key.pem}]}}
upstreams:
  origin: {servers: [{address: "127.0.0.1:$OPORT"}]}
routes:
- {host: "*", path: /, upstream: origin}
timeouts: {idle: 600s}
YAML
ROOT="$ROOT" taskset -c 0 "$PY" "$HERE/serve.py" "$WORK/h2proxy.yaml" "${PROF:-}" > "$WORK/serve.log" 2>&1 &
SPID=$!
PIDS+=($SPID)
for _ in $(seq 200); do grep -q listener "$WORK/serve.log" && break; sleep 0.05; done
PORT=$(grep -o '127.0.0.1:[0-9]*' "$WORK/serve.log" | cut -d: -f2)
URL="https://127.0.0.1:$PORT${URLPATH:-/}"
# warm-up: as many requests as the measured run, at most 2000 (a W3 run of 8 x 64 MiB
# must not warm up with 2000 x 64 MiB)
taskset -c 1 h2load -n "$(( N < 2000 ? N : 2000 ))" -c "$C" -m "$M" "$URL" ${H2EXTRA:-} > /dev/null
read -r -a STAT < "/proc/$SPID/stat"; BEFORE=$((STAT[13] + STAT[14]))
if [ -n "${STRACE:-}" ]; then strace -c -f -p "$SPID" -o "$WORK/strace.out" & STRACEPID=$!; sleep 1; fi
taskset -c 1 h2load -n "$N" -c "$C" -m "$M" "$URL" ${H2EXTRA:-} > "$WORK/h2load.out"
if [ -n "${STRACE:-}" ]; then kill -INT "$STRACEPID"; wait "$STRACEPID" || true; head -15 "$WORK/strace.out"; fi
read -r -a STAT < "/proc/$SPID/stat"; AFTER=$((STAT[13] + STAT[14]))
grep -E "^requests:|finished in" "$WORK/h2load.out" | tr '\n' ' '
TICKS=$((AFTER - BEFORE))
echo " ticks=$TICKS us/req=$("$PY" -c "import os; print(round($TICKS * 1e6 / os.sysconf('SC_CLK_TCK') / $N, 1))")"
kill -INT "$SPID"; wait "$SPID" 2>/dev/null || true
grep "gc collections" "$WORK/serve.log" || true
