#!/usr/bin/env bash
# Side-by-side benchmark: Portico, nginx and HAProxy as reverse proxies in front of the bundled
# quote backend (build/portico-quote, ~120-byte JSON replies). Called by `make bench`.
#
# Pinning, for a 2-core machine: the proxy runs alone on CPU 0 with ONE worker; wrk (or ab) and
# the backend (one thread) share CPU 1. Every proxy gets the same client, backend, payload, flags
# and keep-alive on both sides. The primary metric is the proxy's CPU time per request
# (utime+stime of its process tree / requests), which does not depend on who saturates first.
#
# Environment:
#   BENCH_SECONDS=10        length of each measured wrk run (after a 2 s warm-up)
#   BENCH_RUNS=1            measured runs per target; the table shows medians
#   BENCH_PROXIES="portico nginx haproxy"
#   BENCH_STRACE=1          also count syscalls per request: strace -c -f during ab -k -n 20000 -c 50
#   BENCH_MAPPINGS=10000    Mappings in the second Portico run (0 skips it)
#   BENCH_PORT_BASE=18080   proxy port; backend +1, Portico admin +9
#   PORTICO_BUILD=build     where portico and portico-quote are
# Logs, generated configs and raw results stay in /tmp/portico-bench.*/ (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
MEASURE=("$PY" bench/measure.py)
BUILD=${PORTICO_BUILD:-build}
BENCH_SECONDS=${BENCH_SECONDS:-10}
PROXIES=${BENCH_PROXIES:-portico nginx haproxy}
MAPPINGS=${BENCH_MAPPINGS:-10000}
PROXY_PORT=${BENCH_PORT_BASE:-18080}
BACKEND_PORT=$((PROXY_PORT + 1))
ADMIN_PORT=$((PROXY_PORT + 9))
PROXY_CPU=0
CLIENT_CPU=1
URL="http://127.0.0.1:$PROXY_PORT/"

RUN=$(mktemp -d /tmp/portico-bench.XXXXXX)
export BENCH_RUN=$RUN BENCH_RESULTS=$RUN/results.jsonl BENCH_CLIENT_CPU=$CLIENT_CPU
export BENCH_PROXY_CPU=$PROXY_CPU
export BENCH_SECONDS

STARTED=() # pids this script started, stopped in reverse order on exit

log() { printf '%s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# stop_pid PID: SIGTERM, up to 5 s, then SIGKILL; reaps it.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        stop_pid "${STARTED[$i]}"
    done
    log "bench: logs, configs and raw results in $RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

wait_port_free() {
    local i
    for i in $(seq 50); do
        listening "$1" || return 0
        sleep 0.1
    done
    die "port $1 still in use"
}

wait_port() {
    local i
    for i in $(seq 100); do
        listening "$1" && return 0
        sleep 0.1
    done
    return 1
}

fill_template() { # template output
    sed -e "s|@PROXY_PORT@|$PROXY_PORT|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@RUN@|$RUN|g" "$1" >"$2"
}

upstream_conns() { ss -Htn state established "( dport = :$BACKEND_PORT )" 2>/dev/null | wc -l; }

# ---- preflight ----

command -v wrk >/dev/null || die "wrk is not installed (make deps)"
command -v taskset >/dev/null || die "taskset is not installed"
if [ "$(nproc)" -lt 2 ]; then
    log "bench: WARNING: fewer than 2 CPUs; everything shares CPU 0 and the numbers mean little"
    PROXY_CPU=0 CLIENT_CPU=0
    export BENCH_CLIENT_CPU=0
fi
# A quiet machine matters: anything else running shares the two cores.
read -r _ u n sy id io irq sirq st _ </proc/stat
sleep 1
read -r _ u2 n2 sy2 id2 io2 irq2 sirq2 st2 _ </proc/stat
busy=$(((u2 + n2 + sy2 + irq2 + sirq2 + st2) - (u + n + sy + irq + sirq + st)))
total=$((busy + id2 + io2 - id - io))
if [ "$total" -gt 0 ] && [ $((100 * busy / total)) -gt 15 ]; then
    log "bench: WARNING: the machine is already $((100 * busy / total))% busy before the benchmark;"
    log "       req/s and latency will be noisy (see the 'others %' column)"
fi
for p in "$PROXY_PORT" "$BACKEND_PORT" "$ADMIN_PORT"; do
    listening "$p" && die "port $p is in use (set BENCH_PORT_BASE)"
done
[ -x "$BUILD/portico-quote" ] || make --no-print-directory "$BUILD/portico-quote" >/dev/null

log "== Portico benchmark: $(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
log "   wrk -t1 -c50 -d${BENCH_SECONDS}s (HTTP/1.1 keep-alive) on CPU $CLIENT_CPU with the backend; proxy alone on CPU $PROXY_CPU, 1 worker"
log "   $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'); $(nginx -v 2>&1 || echo 'nginx: absent'); $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3 || echo 'haproxy: absent')"

# ---- the backend ----

taskset -c "$CLIENT_CPU" "$BUILD/portico-quote" --port "$BACKEND_PORT" --threads 1 --name bench \
    >"$RUN/backend.log" 2>&1 &
BACKEND_PID=$!
STARTED+=("$BACKEND_PID")
wait_port "$BACKEND_PORT" || die "the quote backend did not start: $(cat "$RUN/backend.log")"

log ""
log "-- direct (wrk -> backend, no proxy: the ceiling of this setup)"
timeout 30 taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d2s "http://127.0.0.1:$BACKEND_PORT/" >/dev/null
"${MEASURE[@]}" wrk direct "http://127.0.0.1:$BACKEND_PORT/" --pids "$BACKEND_PID"

# ---- one proxy ----

PROXY_PID=""

# measure_proxy LABEL [EXTRA_JSON]: warm up, measure, optionally strace, using PROXY_PID.
measure_proxy() {
    local label=$1 extra=${2:-}
    if [ -z "$extra" ]; then extra='{}'; fi
    timeout 30 taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d2s "$URL" >/dev/null
    local conns
    conns=$(upstream_conns)
    log "  $label: $conns upstream connections open after warm-up"
    extra=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); d["upstream_conns"]=int(sys.argv[2]); print(json.dumps(d))' "$extra" "$conns")
    "${MEASURE[@]}" wrk "$label" "$URL" --pids "$PROXY_PID" --backend-pid "$BACKEND_PID" \
        --extra "$extra"
    if [ "${BENCH_STRACE:-0}" = 1 ]; then
        if command -v strace >/dev/null && command -v ab >/dev/null; then
            "${MEASURE[@]}" strace "$label" "$URL" --pids "$PROXY_PID" --timeout 120 ||
                log "  $label: strace run failed"
        else
            log "  $label: strace or ab missing, no syscall count"
        fi
    fi
}

stop_proxy() {
    if [ -n "$PROXY_PID" ]; then
        stop_pid "$PROXY_PID"
        local keep=() p
        for p in "${STARTED[@]}"; do
            [ "$p" = "$PROXY_PID" ] || keep+=("$p")
        done
        STARTED=("${keep[@]}")
        PROXY_PID=""
    fi
    wait_port_free "$PROXY_PORT"
}

# started LABEL LOG: whether the proxy just started answers 200 through to the backend.
started() {
    local label=$1 logf=$2
    STARTED+=("$PROXY_PID")
    if "${MEASURE[@]}" wait-http "$URL" --timeout "${3:-15}" --pid "$PROXY_PID"; then
        return 0
    fi
    log "  $label: SKIPPED: it does not answer 200 on $URL (log: $logf)"
    tail -5 "$logf" 2>/dev/null | sed 's/^/    | /'
    "${MEASURE[@]}" note "$label" "did not answer 200 on $URL (see $logf)"
    stop_proxy
    return 1
}

bench_nginx() {
    command -v nginx >/dev/null || { "${MEASURE[@]}" note nginx "nginx not installed"; return; }
    fill_template bench/nginx.conf.in "$RUN/nginx.conf"
    taskset -c "$PROXY_CPU" nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" \
        >"$RUN/nginx.log" 2>&1 &
    PROXY_PID=$!
    started nginx "$RUN/nginx-error.log" || return 0
    measure_proxy nginx
    stop_proxy
}

bench_haproxy() {
    command -v haproxy >/dev/null || { "${MEASURE[@]}" note haproxy "haproxy not installed"; return; }
    fill_template bench/haproxy.cfg.in "$RUN/haproxy.cfg"
    taskset -c "$PROXY_CPU" haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
    PROXY_PID=$!
    started haproxy "$RUN/haproxy.log" || return 0
    measure_proxy haproxy
    stop_proxy
}

# compile_ms LOG: X from the last "snapshot N compiled in X ms" line, or "null".
compile_ms() {
    local x
    x=$(grep -oE 'snapshot [0-9]+ compiled in [0-9.]+ ms' "$1" 2>/dev/null | tail -1 |
        awk '{print $5}')
    echo "${x:-null}"
}

# bench_portico LABEL MAPPINGS
bench_portico() {
    local label=$1 n=$2 dir="$RUN/$1-config" logf="$RUN/$1.log"
    if [ ! -x "$BUILD/portico" ]; then
        log "  $label: SKIPPED: $BUILD/portico is not built yet"
        "${MEASURE[@]}" note "$label" "$BUILD/portico is not built yet"
        return 0
    fi
    "${MEASURE[@]}" portico-config "$dir" --port "$PROXY_PORT" --backend-port "$BACKEND_PORT" \
        --mappings "$n"
    taskset -c "$PROXY_CPU" "$BUILD/portico" run --config "$dir" --workers 1 \
        --admin-port "$ADMIN_PORT" >"$logf" 2>&1 &
    PROXY_PID=$!
    started "$label" "$logf" 60 || return 0
    local ms
    ms=$(compile_ms "$logf")
    log "  $label: $n Mappings, config compiled in ${ms/null/(no 'snapshot N compiled in X ms' log line)} ms"
    measure_proxy "$label" "{\"compile_ms\": $ms, \"mappings\": $n}"
    stop_proxy
}

for proxy in $PROXIES; do
    log ""
    log "-- $proxy"
    case $proxy in
    portico) bench_portico portico 1 ;;
    nginx) bench_nginx ;;
    haproxy) bench_haproxy ;;
    *) die "unknown proxy '$proxy' in BENCH_PROXIES" ;;
    esac
done

if [[ " $PROXIES " == *" portico "* ]] && [ "$MAPPINGS" -gt 0 ]; then
    log ""
    log "-- portico with $MAPPINGS Mappings (request hits the / catch-all, matched last)"
    bench_portico portico-10k "$MAPPINGS"
fi

"${MEASURE[@]}" table
