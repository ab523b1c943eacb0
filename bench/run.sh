#!/usr/bin/env bash
# Side-by-side benchmark: Portico, nginx and HAProxy as reverse proxies in front of the bundled
# quote backend (build/portico-quote, ~120-byte JSON replies). Called by `make bench`.
#
# Rows (BENCH_ROWS, comma-separated, default all):
#   http       plain HTTP keep-alive on both sides (plus the 10k-Mappings Portico run)
#   https      TLS 1.3 termination, keep-alive: wrk over https, plaintext keep-alive upstream
#   handshake  full TLS 1.3 handshakes: ab without -k (a new connection, full handshake and one
#              request each; ab never resumes); handshakes/s and CPU us per handshake
#   h2         HTTP/2 from clients: h2load -c50 -m10 (50 connections x 10 concurrent streams,
#              h2c with prior knowledge on the cleartext port: Portico's HTTP Listener, nginx
#              `listen ... http2`, HAProxy `bind ... proto h2`), HTTP/1.1 keep-alive upstream.
#              A 2 s warm-up (h2load -D 2), then BENCH_RUNS runs of a fixed request count (-n:
#              the warm-up's rate x BENCH_SECONDS, or BENCH_H2_REQUESTS) so that every request
#              is finished and counted; a run in which a request failed or was not 2xx is marked
#              INVALID. req/s, mean latency, CPU us per request
#   mtls       plaintext keep-alive client side; TLS with a client certificate to an HAProxy
#              "sidecar" (verify required, ALPN istio,http/1.1) on CPU 1 in front of the backend
#   tracing    Portico only: the http row without and with a TracingService (Zipkin, 100%
#              sampling) reporting to bench/zipkin-sink.c on CPU 1; CPU ratio and span counts
#   auth       external authorization over HTTP: each proxy without, then with, a check of every
#              request by a local auth server that answers 200 to everything (a second
#              portico-quote on CPU 1, keep-alive to it): Portico's HTTP AuthService, nginx's
#              `auth_request` (bench/nginx-auth.conf.in). Two answers: 200 with an empty body
#              (-auth, the comparison) and 200 with a ~100-byte body (-authbody: nginx does not
#              read an auth answer's body and so cannot keep that connection alive). CPU us per
#              request without and with, the difference (the added cost of a check), and
#              Portico-added / nginx-added. HAProxy has no native auth_request equivalent (only
#              Lua or SPOE add-ons): not in this row. Portico's envoy_http_ext_authz_ok checks
#              per request are recorded.
#   ratelimit  Portico only: without, then with, a RateLimitService (protocol_version v3,
#              timeout_ms 1000, failure_mode_deny so a failed call shows as a 500) and one
#              generic_key label on the Mapping: one ShouldRateLimit call over h2c per request
#              to bench/ratelimit-sink.c (C, libnghttp2, answers OK) on CPU 1; CPU us per
#              request without and with, and envoy_cluster_ratelimit_ok calls per request
#   idle       user-space memory per idle keep-alive connection: the Rss growth of the proxy
#              over BENCH_IDLE_CONNS connections that each made one GET (one after the other,
#              the whole response read) and then stay open idle, read 1 s after the last, divided
#              by their number. A fresh proxy for every run (a warm allocator would hide the
#              growth), warmed with 20 requests first; the http row's configurations, 1 worker.
#              Rss (/proc/PID/smaps_rollup) of the serving processes: Portico's and HAProxy's
#              one process; nginx's worker, not its master, which holds no connection (its
#              change is printed). Method in detail: bench/measure.py, above cmd_idle.
# One certificate set is generated per run with openssl (BENCH_TLS_KEY=ec: ECDSA P-256, or rsa:
# RSA-2048): the server certificate all three proxies terminate with, and a mesh CA that signs
# the sidecar's and the proxies' client certificates.
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
#   BENCH_ROWS="http,https,handshake,h2,mtls,tracing,auth,ratelimit,idle"
#   BENCH_TLS_KEY=ec        ec (ECDSA P-256) or rsa (RSA-2048) for every certificate of the run
#   BENCH_HS_CONCURRENCY=20 ab -c for the handshake row
#   BENCH_H2_REQUESTS=      h2load -n of every measured h2 run (default: from the warm-up)
#   BENCH_IDLE_CONNS=2000   connections of the idle row (BENCH_RUNS fresh proxies each)
#   BENCH_IDLE_WINDOW=1     GETs in flight at once while the idle row opens its connections
#                           (1: one after the other; 2000: all at once, which adds the peak
#                           that the allocator keeps to the idle cost)
#   BENCH_PORT_BASE=18080   proxy port; backend +1, mTLS sidecar +2, Zipkin collector +3,
#                           auth server +4, rate-limit service +5, Portico admin +9
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
SIDECAR_PORT=$((PROXY_PORT + 2))
COLLECTOR_PORT=$((PROXY_PORT + 3))
AUTH_PORT=$((PROXY_PORT + 4))
RLS_PORT=$((PROXY_PORT + 5))
ADMIN_PORT=$((PROXY_PORT + 9))
ROWS=${BENCH_ROWS:-http,https,handshake,h2,mtls,tracing,auth,ratelimit,idle}
RUNS=${BENCH_RUNS:-1}
IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
IDLE_WINDOW=${BENCH_IDLE_WINDOW:-1}
IDLE_RUN=1         # the idle row's current run
TLS_KEY=${BENCH_TLS_KEY:-ec}
HS_CONC=${BENCH_HS_CONCURRENCY:-20}
PROXY_CPU=0
CLIENT_CPU=1
HTTP_URL="http://127.0.0.1:$PROXY_PORT/"
HTTPS_URL="https://127.0.0.1:$PROXY_PORT/"
URL=$HTTP_URL       # the current row's URL
ROW=http            # the current row
UPSTREAM_PORT=$BACKEND_PORT
CONNS_PORT=""       # the port whose connections "upstream" counts (default: UPSTREAM_PORT)
AUTH_PREFIX=""      # the auth row's path_prefix of the check requests

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
        -e "s|@SIDECAR_PORT@|$SIDECAR_PORT|g" -e "s|@AUTH_PORT@|$AUTH_PORT|g" \
        -e "s|@AUTH_PREFIX@|$AUTH_PREFIX|g" \
        -e "s|@CERTS@|$RUN/certs|g" \
        -e "s|@RUN@|$RUN|g" "$1" >"$2"
}

upstream_conns() {
    ss -Htn state established "( dport = :${CONNS_PORT:-$UPSTREAM_PORT} )" 2>/dev/null | wc -l
}

has_row() { [[ ",$ROWS," == *",$1,"* ]]; }

# json_set JSON KEY VALUE_JSON: JSON with KEY set.
json_set() {
    "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]=json.loads(sys.argv[3]); print(json.dumps(d))' "$1" "$2" "$3"
}

# make_certs: $RUN/certs: server.{crt,key,pem} (self-signed, CN=localhost, SAN localhost and
# 127.0.0.1) for TLS termination; ca.{crt,key} (the bench mesh CA); sidecar.* and client.*
# (Istio-like workload certificates signed by it: URI SAN spiffe://cluster.local/ns/default/sa/X,
# server+client EKU). One key type for all: $TLS_KEY.
make_certs() {
    local d=$RUN/certs n sa
    local key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    [ "$TLS_KEY" = rsa ] && key=(-newkey rsa:2048)
    mkdir -p "$d"
    openssl req -x509 "${key[@]}" -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$d/server.key" -out "$d/server.crt" >"$d/openssl.log" 2>&1 ||
        die "openssl req failed: $(cat "$d/openssl.log")"
    cat "$d/server.crt" "$d/server.key" >"$d/server.pem"
    openssl req -x509 "${key[@]}" -nodes -days 2 -subj "/O=cluster.local/CN=bench mesh CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$d/ca.key" -out "$d/ca.crt" >>"$d/openssl.log" 2>&1 ||
        die "openssl req (CA) failed: $(cat "$d/openssl.log")"
    for n in sidecar client; do
        sa=$([ $n = sidecar ] && echo quote || echo portico-edge)
        printf '%s\n' "subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/$sa" \
            "extendedKeyUsage=serverAuth,clientAuth" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "basicConstraints=critical,CA:FALSE" >"$d/$n.ext"
        openssl req -new "${key[@]}" -nodes -subj /O=cluster.local -keyout "$d/$n.key" \
            -out "$d/$n.csr" >>"$d/openssl.log" 2>&1 &&
            openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
                -days 2 -extfile "$d/$n.ext" -out "$d/$n.crt" >>"$d/openssl.log" 2>&1 ||
            die "openssl ($n) failed: $(cat "$d/openssl.log")"
        cat "$d/$n.crt" "$d/$n.key" >"$d/$n.pem"
    done
}

# tls_probe PORT: "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" as the proxy on PORT negotiates it
# with a default OpenSSL client.
tls_probe() {
    local out
    out=$(timeout 10 openssl s_client -connect "127.0.0.1:$1" -brief </dev/null 2>&1 || true)
    printf '%s %s %s\n' \
        "$(sed -n 's/^Protocol version: *//p' <<<"$out")" \
        "$(sed -n 's/^Ciphersuite: *//p' <<<"$out")" \
        "$(sed -n 's/^\(Peer\|Server\) Temp Key: *\([^,]*\).*/\2/p' <<<"$out" | head -1)"
}

# ---- preflight ----

for r in ${ROWS//,/ }; do
    case $r in
    http | https | handshake | h2 | mtls | tracing | auth | ratelimit | idle) ;;
    *) die "unknown row '$r' in BENCH_ROWS (http, https, handshake, h2, mtls, tracing, auth, ratelimit, idle)" ;;
    esac
done
case $TLS_KEY in ec | rsa) ;; *) die "BENCH_TLS_KEY must be ec or rsa" ;; esac
command -v wrk >/dev/null || die "wrk is not installed (make deps)"
command -v taskset >/dev/null || die "taskset is not installed"
if has_row https || has_row handshake || has_row mtls; then
    command -v openssl >/dev/null || die "openssl is not installed (TLS rows)"
fi
if has_row handshake && ! command -v ab >/dev/null; then
    die "ab is not installed (handshake row; apache2-utils)"
fi
if has_row h2; then
    command -v h2load >/dev/null || die "h2load is not installed (h2 row; nghttp2-client)"
    command -v curl >/dev/null || die "curl is not installed (h2 row: the HTTP/2 start check)"
fi
if has_row tracing && ! command -v cc >/dev/null; then
    die "cc is not installed (tracing row builds bench/zipkin-sink.c)"
fi
if has_row ratelimit && ! command -v cc >/dev/null; then
    die "cc is not installed (ratelimit row builds bench/ratelimit-sink.c with libnghttp2)"
fi
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ ${BENCH_H2_REQUESTS:-1} =~ ^[1-9][0-9]*$ ]] || die "BENCH_H2_REQUESTS must be a positive integer"
if has_row idle; then
    [[ $IDLE_CONNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_IDLE_CONNS must be a positive integer"
    [[ $IDLE_WINDOW =~ ^[1-9][0-9]*$ ]] || die "BENCH_IDLE_WINDOW must be a positive integer"
    # Every proxy (and the client) needs a descriptor per idle connection: raise the soft limit
    # for this script and what it starts, the same for all three.
    nofile=$((IDLE_CONNS + 1024))
    if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$nofile" ]; then
        ulimit -Sn "$nofile" 2>/dev/null ||
            die "idle row: cannot raise the open-files limit to $nofile (hard: $(ulimit -Hn))"
    fi
    [ "$IDLE_CONNS" -le 3000 ] ||
        log "bench: WARNING: BENCH_IDLE_CONNS > 3000 passes nginx's worker_connections and HAProxy's maxconn (4096)"
fi
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
for p in "$PROXY_PORT" "$BACKEND_PORT" "$SIDECAR_PORT" "$COLLECTOR_PORT" "$AUTH_PORT" \
    "$RLS_PORT" "$ADMIN_PORT"; do
    listening "$p" && die "port $p is in use (set BENCH_PORT_BASE)"
done
[ -x "$BUILD/portico-quote" ] || make --no-print-directory "$BUILD/portico-quote" >/dev/null

log "== Portico benchmark: $(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
log "   wrk -t1 -c50 -d${BENCH_SECONDS}s (HTTP/1.1 keep-alive) on CPU $CLIENT_CPU with the backend; proxy alone on CPU $PROXY_CPU, 1 worker"
log "   $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'); $(nginx -v 2>&1 || echo 'nginx: absent'); $(haproxy -v 2>/dev/null | sed -n 1p | cut -d' ' -f1-3 || echo 'haproxy: absent')"
has_row h2 && log "   $(h2load --version 2>&1 | head -1) (h2 row)"
log "   rows: $ROWS"
if has_row https || has_row handshake || has_row mtls; then
    make_certs
    log "   certificates: $([ "$TLS_KEY" = rsa ] && echo RSA-2048 || echo ECDSA P-256) (BENCH_TLS_KEY), server self-signed + mesh CA, $(openssl version | cut -d' ' -f1-2), in $RUN/certs"
fi

# ---- the backend ----

start_backend() {
    taskset -c "$CLIENT_CPU" "$BUILD/portico-quote" --port "$BACKEND_PORT" --threads 1 --name bench \
        >>"$RUN/backend.log" 2>&1 &
    BACKEND_PID=$!
    STARTED+=("$BACKEND_PID")
    wait_port "$BACKEND_PORT" || die "the quote backend did not start: $(cat "$RUN/backend.log")"
}

# ensure_backend: the backend must outlive every row; if it died, say how and start another
# (a result measured while it was down shows non-2xx responses).
ensure_backend() {
    kill -0 "$BACKEND_PID" 2>/dev/null && return 0
    local rc=0
    wait "$BACKEND_PID" 2>/dev/null || rc=$?
    log "  bench: WARNING: the quote backend (pid $BACKEND_PID) is gone (exit status $rc$( [ "$rc" -gt 128 ] && echo ", signal $((rc - 128))")); restarting it"
    forget_pid "$BACKEND_PID"
    start_backend
    MEASURE_PIDS=$BACKEND_PID${SIDECAR_PID:+,$SIDECAR_PID}
}

start_backend

if has_row http; then
    log ""
    log "-- direct (wrk -> backend, no proxy: the ceiling of this setup)"
    timeout 30 taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d2s "http://127.0.0.1:$BACKEND_PORT/" >/dev/null
    "${MEASURE[@]}" wrk direct "http://127.0.0.1:$BACKEND_PORT/" --pids "$BACKEND_PID"
fi

# ---- one proxy ----

PROXY_PID=""
SIDECAR_PID=""
COLLECTOR_PID=""
MEASURE_PIDS="" # pids whose CPU counts as "backend" (CPU 1): the backend, plus the sidecar in mtls

# measure_proxy LABEL [EXTRA_JSON]: warm up, measure, optionally strace, using PROXY_PID and the
# current ROW, URL and UPSTREAM_PORT.
measure_proxy() {
    local label=$1 extra=${2:-} conns tls info0 info1
    if [ -z "$extra" ]; then extra='{}'; fi
    extra=$(json_set "$extra" row "\"$ROW\"")
    if [ "$URL" = "$HTTPS_URL" ]; then
        tls=$(tls_probe "$PROXY_PORT")
        log "  $label: negotiates $tls"
        extra=$(json_set "$extra" tls "\"$tls\"")
    fi
    if [ "$ROW" = idle ]; then
        local only=()
        [ "$label" = nginx-idle ] && only=(--workers-only)
        timeout $((IDLE_CONNS / 10 + 150)) "${MEASURE[@]}" idle "$label" "$URL" \
            --pid "$PROXY_PID" --conns "$IDLE_CONNS" --window "$IDLE_WINDOW" --run "$IDLE_RUN" \
            --timeout $((IDLE_CONNS / 10 + 120)) --extra "$extra" "${only[@]}" ||
            log "  $label: idle run $IDLE_RUN failed (exit status $?)"
        return 0
    fi
    if [ "$ROW" = handshake ]; then
        timeout 30 taskset -c "$CLIENT_CPU" ab -f TLS1.3 -l -q -r -c "$HS_CONC" -t 2 -n 100000000 \
            "$URL" >/dev/null 2>&1 || log "  $label: ab warm-up failed"
        "${MEASURE[@]}" ab "$label" "$URL" --pids "$PROXY_PID" --backend-pid "$MEASURE_PIDS" \
            --concurrency "$HS_CONC" --extra "$extra"
        return 0
    fi
    if [ "$ROW" = h2 ]; then
        # measure.py warms up, counts the upstream connections, then measures; h2load reports
        # 2xx apart from other statuses, so no keep-alive check is needed.
        "${MEASURE[@]}" h2load "$label" "$URL" --pids "$PROXY_PID" --backend-pid "$MEASURE_PIDS" \
            --upstream-port "$UPSTREAM_PORT" --extra "$extra" ||
            log "  $label: h2load measurement failed (exit status $?)"
        return 0
    fi
    # wrk takes 3xx for success: check first that a reused connection is still answered 200.
    local check
    check=$("${MEASURE[@]}" keepalive-check "$URL" --evidence "$RUN/$label-keepalive-check.txt" \
        --header x-sidecar-tls)
    extra=$(json_set "$extra" keepalive_check "$check")
    if [ "$ROW" = mtls ]; then
        log "  $label: upstream TLS as the sidecar saw it: $("$PY" -c 'import json,sys; print(json.loads(sys.argv[1]).get("x-sidecar-tls", "(no x-sidecar-tls header)"))' "$check")"
    fi
    if [[ $check != *'"ok": true'* ]]; then
        log "  $label: WARNING: 3 GETs on one keep-alive connection got $check;" \
            "the run below does not measure proxying (evidence: $RUN/$label-keepalive-check.txt)"
    fi
    [ "$ROW" = mtls ] && info0=$("${MEASURE[@]}" haproxy-info "$RUN/sidecar.sock")
    timeout 30 taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d2s "$URL" >/dev/null
    conns=$(upstream_conns)
    log "  $label: $conns connections to port ${CONNS_PORT:-$UPSTREAM_PORT} open after warm-up"
    extra=$(json_set "$extra" upstream_conns "$conns")
    local more=()
    case $label in
    portico-trace) more=(--collector "http://127.0.0.1:$COLLECTOR_PORT/stats" --collector-pid "$COLLECTOR_PID") ;;
    portico-auth | portico-authbody) more=(--metrics "http://127.0.0.1:$ADMIN_PORT/metrics" --metric envoy_http_ext_authz_ok) ;;
    portico-rl) more=(--metrics "http://127.0.0.1:$ADMIN_PORT/metrics" --metric envoy_cluster_ratelimit_ok) ;;
    esac
    "${MEASURE[@]}" wrk "$label" "$URL" --pids "$PROXY_PID" --backend-pid "$MEASURE_PIDS" \
        --extra "$extra" "${more[@]}"
    if [ "$ROW" = mtls ]; then
        info1=$("${MEASURE[@]}" haproxy-info "$RUN/sidecar.sock")
        local n
        n=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[2])["CumSslConns"]-json.loads(sys.argv[1])["CumSslConns"])' "$info0" "$info1")
        log "  $label: the sidecar accepted $n TLS connections (warm-up and measured run)"
        "$PY" - "$BENCH_RESULTS" "$label" "$n" <<'PYEOF'
import json, sys
path, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(path).read().splitlines()
for i in range(len(lines) - 1, -1, -1):
    r = json.loads(lines[i])
    if r["label"] == label and r["kind"] == "wrk":
        r["sidecar_tls_conns"] = n
        lines[i] = json.dumps(r)
        break
open(path, "w").write("\n".join(lines) + "\n")
PYEOF
    fi
    if [ "${BENCH_STRACE:-0}" = 1 ]; then
        if command -v strace >/dev/null && command -v ab >/dev/null; then
            "${MEASURE[@]}" strace "$label" "$URL" --pids "$PROXY_PID" --timeout 120 ||
                log "  $label: strace run failed"
        else
            log "  $label: strace or ab missing, no syscall count"
        fi
    fi
}

# forget_pid PID: stop PID and drop it from STARTED.
forget_pid() {
    local pid=$1 keep=() p
    stop_pid "$pid"
    for p in "${STARTED[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    STARTED=("${keep[@]}")
}

stop_proxy() {
    if [ -n "$PROXY_PID" ]; then
        forget_pid "$PROXY_PID"
        PROXY_PID=""
    fi
    wait_port_free "$PROXY_PORT"
}

# started LABEL LOG: whether the proxy just started answers 200 through to the backend.
started() {
    local label=$1 logf=$2
    STARTED+=("$PROXY_PID")
    local h2=()
    [ "$ROW" = h2 ] && h2=(--h2)
    if "${MEASURE[@]}" wait-http "$URL" --timeout "${3:-15}" --pid "$PROXY_PID" "${h2[@]}"; then
        return 0
    fi
    log "  $label: SKIPPED: it does not answer 200${h2:+ over HTTP/2 (prior knowledge)} on $URL (log: $logf)"
    tail -5 "$logf" 2>/dev/null | sed 's/^/    | /'
    "${MEASURE[@]}" note "$label" "did not answer 200 on $URL (see $logf)"
    stop_proxy
    return 1
}

# row_suffix: the label suffix of the current row ("" for http).
row_suffix() {
    case $ROW in
    http) echo "" ;;
    https) echo "-https" ;;
    handshake) echo "-hs" ;;
    h2) echo "-h2" ;;
    mtls) echo "-mtls" ;;
    idle) echo "-idle" ;;
    esac
}

# row_template NAME: bench/NAME.in for http, bench/NAME-https.in (https, handshake),
# bench/NAME-h2.in or bench/NAME-mtls.in.
row_template() {
    local base=${1%.*} ext=${1##*.}
    case $ROW in
    http | idle) echo "bench/$1.in" ;;
    https | handshake) echo "bench/$base-https.$ext.in" ;;
    h2) echo "bench/$base-h2.$ext.in" ;;
    mtls) echo "bench/$base-mtls.$ext.in" ;;
    esac
}

# bench_nginx [LABEL TEMPLATE]: the current row's nginx (default: nginx<suffix> and its
# template).
bench_nginx() {
    local label=${1:-nginx$(row_suffix)} template=${2:-$(row_template nginx.conf)}
    command -v nginx >/dev/null || { "${MEASURE[@]}" note "$label" "nginx not installed"; return; }
    fill_template "$template" "$RUN/$label.conf"
    taskset -c "$PROXY_CPU" nginx -p "$RUN" -c "$RUN/$label.conf" -e "$RUN/nginx-error.log" \
        >"$RUN/$label.log" 2>&1 &
    PROXY_PID=$!
    started "$label" "$RUN/nginx-error.log" || return 0
    measure_proxy "$label"
    stop_proxy
}

bench_haproxy() {
    local label="haproxy$(row_suffix)"
    command -v haproxy >/dev/null || { "${MEASURE[@]}" note "$label" "haproxy not installed"; return; }
    fill_template "$(row_template haproxy.cfg)" "$RUN/$label.cfg"
    taskset -c "$PROXY_CPU" haproxy -db -f "$RUN/$label.cfg" >"$RUN/$label.log" 2>&1 &
    PROXY_PID=$!
    started "$label" "$RUN/$label.log" || return 0
    measure_proxy "$label"
    stop_proxy
}

# compile_ms LOG: X from the last "snapshot N compiled in X ms" line, or "null".
compile_ms() {
    local x
    x=$(grep -oE 'snapshot [0-9]+ compiled in [0-9.]+ ms' "$1" 2>/dev/null | tail -1 |
        awk '{print $5}')
    echo "${x:-null}"
}

# bench_portico LABEL MAPPINGS [MODE]: MODE is http (default), https, mtls, tracing, auth or
# ratelimit.
bench_portico() {
    local label=$1 n=$2 mode=${3:-http} dir="$RUN/$1-config" logf="$RUN/$1.log"
    if [ ! -x "$BUILD/portico" ]; then
        log "  $label: SKIPPED: $BUILD/portico is not built yet"
        "${MEASURE[@]}" note "$label" "$BUILD/portico is not built yet"
        return 0
    fi
    "${MEASURE[@]}" portico-config "$dir" --port "$PROXY_PORT" --backend-port "$BACKEND_PORT" \
        --mappings "$n" --mode "$mode" --certs "$RUN/certs" --upstream-port "$UPSTREAM_PORT" \
        --collector-port "$COLLECTOR_PORT" --auth-port "$AUTH_PORT" --rls-port "$RLS_PORT" \
        --auth-path-prefix "$AUTH_PREFIX"
    env ${PORTICO_ENV:-} taskset -c "$PROXY_CPU" "$BUILD/portico" run --config "$dir" --workers 1 \
        --admin-port "$ADMIN_PORT" >"$logf" 2>&1 &
    PROXY_PID=$!
    started "$label" "$logf" 60 || return 0
    local ms
    ms=$(compile_ms "$logf")
    log "  $label: $n Mappings, config compiled in ${ms/null/(no 'snapshot N compiled in X ms' log line)} ms"
    measure_proxy "$label" "{\"compile_ms\": $ms, \"mappings\": $n}"
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
        log "  $label: PORTICO EXITED during the measurement (log: $logf)"
        tail -5 "$logf" | sed 's/^/    | /'
    fi
    grep -vE '^ACCESS ' "$logf" | grep -E ' (warn|error|fatal|crit)' | head -5 |
        sed "s/^/  $label log: /" || true
    stop_proxy
}

# portico_mode: the portico-config --mode of the current row.
portico_mode() {
    case $ROW in
    handshake) echo https ;;
    idle | h2) echo http ;; # h2: the HTTP Listener takes h2c with prior knowledge
    *) echo "$ROW" ;;
    esac
}

# run_row ROW: every proxy of BENCH_PROXIES on ROW.
run_row() {
    ROW=$1
    local proxy
    for proxy in $PROXIES; do
        log ""
        log "-- $proxy$(row_suffix)"
        ensure_backend
        case $proxy in
        portico) bench_portico "portico$(row_suffix)" 1 "$(portico_mode)" ;;
        nginx) bench_nginx ;;
        haproxy) bench_haproxy ;;
        *) die "unknown proxy '$proxy' in BENCH_PROXIES" ;;
        esac
    done
}

MEASURE_PIDS=$BACKEND_PID

if has_row http; then
    URL=$HTTP_URL UPSTREAM_PORT=$BACKEND_PORT
    run_row http
    if [[ " $PROXIES " == *" portico "* ]] && [ "$MAPPINGS" -gt 0 ]; then
        log ""
        log "-- portico with $MAPPINGS Mappings (request hits the / catch-all, matched last)"
        bench_portico portico-10k "$MAPPINGS"
    fi
fi

if has_row https; then
    log ""
    log "== HTTPS termination, keep-alive (wrk -t1 -c50 over TLS 1.3; plaintext keep-alive upstream)"
    URL=$HTTPS_URL UPSTREAM_PORT=$BACKEND_PORT
    run_row https
fi

if has_row handshake; then
    log ""
    log "== Full TLS handshakes (ab -c$HS_CONC -t$BENCH_SECONDS, no keep-alive, no resumption)"
    URL=$HTTPS_URL UPSTREAM_PORT=$BACKEND_PORT
    run_row handshake
fi

if has_row h2; then
    log ""
    log "== HTTP/2 from clients (h2load -c50 -m10, h2c with prior knowledge; HTTP/1.1 keep-alive upstream)"
    URL=$HTTP_URL UPSTREAM_PORT=$BACKEND_PORT
    run_row h2
fi

if has_row mtls; then
    log ""
    log "== mTLS to the upstream (HAProxy sidecar on CPU $CLIENT_CPU: verify required, ALPN istio,http/1.1)"
    if command -v haproxy >/dev/null; then
        fill_template bench/sidecar.cfg.in "$RUN/sidecar.cfg"
        printf '    stats socket %s mode 600 level admin\n' "$RUN/sidecar.sock" >"$RUN/sidecar.global"
        sed -i "/^    maxconn 4096/r $RUN/sidecar.global" "$RUN/sidecar.cfg"
        taskset -c "$CLIENT_CPU" haproxy -db -f "$RUN/sidecar.cfg" >"$RUN/sidecar.log" 2>&1 &
        SIDECAR_PID=$!
        STARTED+=("$SIDECAR_PID")
        if wait_port "$SIDECAR_PORT"; then
            code=$(timeout 10 curl -sk -o /dev/null -w '%{http_code}' \
                "https://127.0.0.1:$SIDECAR_PORT/" 2>/dev/null || true)
            if [ "$code" = 000 ] || [ -z "$code" ]; then
                log "  sidecar: up; a request without a client certificate is refused (as expected)"
            else
                log "  sidecar: WARNING: a request without a client certificate got HTTP $code"
            fi
            URL=$HTTP_URL UPSTREAM_PORT=$SIDECAR_PORT MEASURE_PIDS="$BACKEND_PID,$SIDECAR_PID"
            run_row mtls
        else
            log "  sidecar did not start: $(tail -3 "$RUN/sidecar.log")"
            for p in $PROXIES; do "${MEASURE[@]}" note "$p-mtls" "the HAProxy sidecar did not start"; done
        fi
        forget_pid "$SIDECAR_PID"
        SIDECAR_PID=""
        MEASURE_PIDS=$BACKEND_PID
    else
        for p in $PROXIES; do "${MEASURE[@]}" note "$p-mtls" "haproxy (the sidecar) not installed"; done
    fi
fi

if has_row tracing && [[ " $PROXIES " == *" portico "* ]]; then
    log ""
    log "== Tracing cost (Portico; TracingService zipkin, 100% sampling, collector bench/zipkin-sink.c on CPU $CLIENT_CPU)"
    URL=$HTTP_URL UPSTREAM_PORT=$BACKEND_PORT ROW=tracing
    if cc -O2 -Wall -o "$RUN/zipkin-sink" bench/zipkin-sink.c 2>"$RUN/zipkin-sink.build.log"; then
        taskset -c "$CLIENT_CPU" "$RUN/zipkin-sink" "$COLLECTOR_PORT" >"$RUN/zipkin-sink.log" 2>&1 &
        COLLECTOR_PID=$!
        STARTED+=("$COLLECTOR_PID")
        if wait_port "$COLLECTOR_PORT"; then
            log ""
            log "-- portico-nostats (no TracingService, and PORTICO_STATS=off: nothing counted)"
            ensure_backend
            PORTICO_ENV="PORTICO_STATS=off" bench_portico portico-nostats 1 http
            log ""
            log "-- portico-notrace (the same config without the TracingService, measured just before)"
            ensure_backend
            bench_portico portico-notrace 1 http
            log ""
            log "-- portico-trace"
            ensure_backend
            bench_portico portico-trace 1 tracing
        else
            "${MEASURE[@]}" note portico-trace "the collector did not start (see $RUN/zipkin-sink.log)"
        fi
        forget_pid "$COLLECTOR_PID"
        COLLECTOR_PID=""
        log "  $(tail -1 "$RUN/zipkin-sink.log")"
    else
        "${MEASURE[@]}" note portico-trace "bench/zipkin-sink.c did not build: $(head -3 "$RUN/zipkin-sink.build.log")"
    fi
fi

if has_row auth; then
    log ""
    log "== External authorization over HTTP (each proxy without, then with, a check per request; auth server: portico-quote on CPU $CLIENT_CPU)"
    URL=$HTTP_URL UPSTREAM_PORT=$BACKEND_PORT ROW=auth
    taskset -c "$CLIENT_CPU" "$BUILD/portico-quote" --port "$AUTH_PORT" --threads 1 --name auth \
        >>"$RUN/auth-server.log" 2>&1 &
    AUTH_PID=$!
    STARTED+=("$AUTH_PID")
    if wait_port "$AUTH_PORT"; then
        for proxy in $PROXIES; do
            if [ "$proxy" = haproxy ]; then
                "${MEASURE[@]}" note haproxy-auth "no native auth_request equivalent (Lua or SPOE add-ons only): not measured"
                continue
            fi
            [ "$proxy" = portico ] || [ "$proxy" = nginx ] || die "unknown proxy '$proxy' in BENCH_PROXIES"
            # Without, then with: the auth server answers the check request 200 with an empty
            # body (portico-quote's /size/0/...: the check path is /size/0 + the request's path),
            # then 200 with a quote (~100 bytes; path /). The auth server's CPU counts with the
            # backend's (CPU 1), not the proxy's; "upstream" counts the auth connections.
            for variant in noauth auth authbody; do
                log ""
                log "-- $proxy-$variant"
                ensure_backend
                MEASURE_PIDS="$BACKEND_PID,$AUTH_PID"
                CONNS_PORT=$AUTH_PORT AUTH_PREFIX=/size/0
                case $variant in
                noauth) CONNS_PORT="" ;;
                authbody) AUTH_PREFIX="" ;;
                esac
                case $proxy-$variant in
                portico-noauth) bench_portico portico-noauth 1 http ;;
                portico-*) bench_portico "portico-$variant" 1 auth ;;
                nginx-noauth) bench_nginx nginx-noauth bench/nginx.conf.in ;;
                nginx-*) bench_nginx "nginx-$variant" bench/nginx-auth.conf.in ;;
                esac
            done
            CONNS_PORT="" AUTH_PREFIX=""
        done
    else
        log "  the auth server did not start: $(tail -3 "$RUN/auth-server.log")"
        for p in $PROXIES; do "${MEASURE[@]}" note "$p-auth" "the auth server did not start"; done
    fi
    forget_pid "$AUTH_PID"
    MEASURE_PIDS=$BACKEND_PID
fi

if has_row ratelimit && [[ " $PROXIES " == *" portico "* ]]; then
    log ""
    log "== Rate limiting (Portico; RateLimitService v3, one generic_key descriptor per request, bench/ratelimit-sink.c on CPU $CLIENT_CPU answering OK)"
    URL=$HTTP_URL UPSTREAM_PORT=$BACKEND_PORT ROW=ratelimit
    if cc -O2 -Wall -o "$RUN/ratelimit-sink" bench/ratelimit-sink.c -lnghttp2 \
        2>"$RUN/ratelimit-sink.build.log"; then
        taskset -c "$CLIENT_CPU" "$RUN/ratelimit-sink" "$RLS_PORT" >"$RUN/ratelimit-sink.log" 2>&1 &
        RLS_PID=$!
        STARTED+=("$RLS_PID")
        if wait_port "$RLS_PORT"; then
            log ""
            log "-- portico-norl (the http row's configuration, measured just before)"
            ensure_backend
            MEASURE_PIDS="$BACKEND_PID,$RLS_PID"
            bench_portico portico-norl 1 http
            log ""
            log "-- portico-rl (a ShouldRateLimit call per request, then upstream)"
            ensure_backend
            MEASURE_PIDS="$BACKEND_PID,$RLS_PID"
            bench_portico portico-rl 1 ratelimit
        else
            "${MEASURE[@]}" note portico-rl "the rate-limit service did not start (see $RUN/ratelimit-sink.log)"
        fi
        forget_pid "$RLS_PID"
        log "  $(tail -1 "$RUN/ratelimit-sink.log")"
    else
        "${MEASURE[@]}" note portico-rl "bench/ratelimit-sink.c did not build: $(head -3 "$RUN/ratelimit-sink.build.log")"
    fi
    MEASURE_PIDS=$BACKEND_PID
fi

if has_row idle; then
    log ""
    log "== Idle keep-alive connections ($IDLE_CONNS connections, one GET each, then idle; $RUNS run(s), a fresh proxy each)"
    URL=$HTTP_URL UPSTREAM_PORT=$BACKEND_PORT
    for IDLE_RUN in $(seq "$RUNS"); do
        run_row idle
    done
fi

"${MEASURE[@]}" table
