#!/usr/bin/env bash
# `make run`: the quickstart. Starts the bundled quote backend on 127.0.0.1:9000 and Portico with
# examples/quickstart/ (HTTP 8080, HTTPS 8443, admin 8877), prints what to try, and waits.
# Ctrl-C (or either process exiting) stops both. Extra arguments go to `portico run`
# (e.g. `scripts/run-quickstart.sh --log-level debug`). PORTICO_BUILD picks the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${PORTICO_BUILD:-build}
CONFIG=examples/quickstart/
PIDS=()

for bin in portico portico-quote; do
    if [ ! -x "$BUILD/$bin" ]; then
        echo "run-quickstart: $BUILD/$bin is missing: run \`make\` first" >&2
        exit 1
    fi
done
for port in 9000 8080 8443 8877; do
    if ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
        echo "run-quickstart: port $port is already in use (another quickstart running?)" >&2
        exit 1
    fi
done

# alive PID: running, not merely a zombie waiting to be reaped.
alive() {
    [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat" 2>/dev/null
}

# stop: SIGTERM to what we started, SIGKILL to what is left after 10 s.
stop() {
    trap - EXIT INT TERM
    local pid left
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 100); do
        left=0
        for pid in "${PIDS[@]}"; do
            if alive "$pid"; then left=1; fi
        done
        [ "$left" = 1 ] || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap stop EXIT
trap 'exit 130' INT TERM

"$BUILD/portico-quote" --bind 127.0.0.1 --port 9000 &
PIDS+=($!)
"$BUILD/portico" run --config "$CONFIG" --admin-port 8877 "$@" &
PORTICO=$!
PIDS+=("$PORTICO")

for _ in $(seq 100); do
    ss -Htln "sport = :8080" 2>/dev/null | grep -q . && break
    if ! kill -0 "$PORTICO" 2>/dev/null; then
        echo "run-quickstart: portico exited before listening on 8080" >&2
        exit 1
    fi
    sleep 0.1
done

cat <<EOF

Portico is running with $CONFIG (pid $PORTICO), the quote backend on 127.0.0.1:9000.
Try:
    curl http://127.0.0.1:8080/backend/
    curl http://127.0.0.1:8877/ambassador/v0/check_ready
Press Ctrl-C to stop both.

EOF

# Return when either process exits (Ctrl-C reaches both processes and this shell); the EXIT
# trap stops whatever is left.
set +e
wait -n "${PIDS[@]}"
status=$?
set -e
echo "run-quickstart: stopping" >&2
exit "$status"
