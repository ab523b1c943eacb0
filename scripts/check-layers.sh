#!/usr/bin/env bash
# The folder rule: the top-level folders of src/ sit on levels, and includes point one way, down.
# A file may include headers of its own folder, of any folder on a lower level, and of another
# folder on its own level as long as those same-level includes form no cycle; it never includes
# a folder on a higher level. A lower layer reports upward through callbacks it was given
# (sources/kubernetes.c gets its rebuild function from main.c), never by naming the layer above.
#   6 main      src/main.c: the CLI, and the wiring of everything below
#   5 admin     the admin server (diag, /metrics, probes)
#   4 control   the control loop: reload, apply a compiled snapshot (bind listening sockets, open
#               the access log, register stats names), publish it, hot restart, `portico check`
#   3 proxy     the data plane (connections, streams, upstreams, workers)
#     sources   where resources come from (config directory watch, Kubernetes API)
#   2 config    YAML -> resources -> compile -> snapshot; compiling has no side effects
#   1 model     the types compile produces and the data plane reads (snapshot-t.h), the typed
#               resources compile reads (resource-t.h), diagnostics; no OpenSSL header
#     http tls route cluster observe
#               HTTP rules; OpenSSL contexts; route tables; DNS and load balancing; counters,
#               access-log formats, tracing (libraries that compile and the data plane both use)
#   0 core      event loop, timers, buffers, strings, logging
#     pb        the C that protoc-c generates from proto/ (in the build folder, "pb/..."): a
#               library below everything, it includes nothing of src/
# src/quote/, the example backend, stands alone. An allowed exception is listed in ALLOW below,
# with the reason and the file that makes it; it is the only way to cross the rule.
# This script prints the include graph (`--graph`) or checks it: an include that points up, a
# folder with no level, or a cycle prints the files responsible and exits 1. Run by `make test`
# (its `layers` step, before the unit tests) and so by CI. Usage: scripts/check-layers.sh [--graph]
set -euo pipefail
cd "$(dirname "$0")/.."

LEVELS="core:0 pb:0 model:1 http:1 tls:1 route:1 cluster:1 observe:1 config:2 proxy:3 sources:3
control:4 admin:5 main:6"

# "from to file" edges that may break the rule, each with why.
ALLOW=(
)

edges() { # "from to file" for every include that crosses folders
    find src -name '*.[ch]' -not -path 'src/quote/*' | sort | while read -r f; do
        local from
        from=$(echo "$f" | cut -d/ -f2)
        if [ -f "src/$from" ]; then from=main; fi
        sed -n 's|^#include "\([a-z0-9_]*\)/.*|\1|p' "$f" | while read -r to; do
            if [ "$to" != "$from" ]; then echo "$from $to $f"; fi
        done
    done | sort -u
}

all=$(edges)
if [ "${1:-}" = "--graph" ]; then
    echo "$all" | awk '{print $1 " -> " $2}' | sort | uniq -c
    exit 0
fi
allowed=$(printf '%s\n' "${ALLOW[@]}")
checked=$(echo "$all" | grep -vxF -f <(echo "$allowed") || true)
status=0

# Levels: every folder has one, and no include points to a higher one.
bad=$(echo "$checked" | awk -v levels="$LEVELS" '
    BEGIN { n = split(levels, a, /[ \n]+/); for (i = 1; i <= n; i++) { split(a[i], p, ":"); lv[p[1]] = p[2] } }
    NF == 3 {
        if (!($1 in lv)) print "  folder " $1 " has no level (add it to LEVELS): " $3
        else if (!($2 in lv)) print "  folder " $2 " has no level (add it to LEVELS): " $3
        else if (lv[$2] > lv[$1]) print "  " $1 " (" lv[$1] ") -> " $2 " (" lv[$2] "): " $3
    }')
if [ -n "$bad" ]; then
    echo "check-layers: includes against the folder rule (folder (level) -> folder (level): file):" >&2
    echo "$bad" | sort -u >&2
    status=1
fi

# Same-level includes (and any others) must not form a cycle. tsort reports a loop on stderr;
# the folders it names are the cycle.
loop=$(echo "$checked" | awk 'NF == 3 {print $1, $2}' | sort -u | tsort 2>&1 >/dev/null |
       sed -n 's/^tsort: //p' | grep -v 'input contains a loop' || true)
if [ -n "$loop" ]; then
    echo "check-layers: include cycle between folders of src/:" >&2
    echo "$loop" | sort -u | sed "s/^/  /" >&2
    folders=$(echo "$loop" | tr '\n' ' ')
    echo "edges inside the cycle (from -> to: files):" >&2
    echo "$checked" | while read -r from to file; do
        case " $folders " in *" $from "*) ;; *) continue ;; esac
        case " $folders " in *" $to "*) echo "  $from -> $to: $file" >&2 ;; esac
    done
    status=1
fi

# An allowance nobody needs any more is removed, so the list stays the truth.
for a in "${ALLOW[@]}"; do
    if ! echo "$all" | grep -qxF "$a"; then
        echo "check-layers: ALLOW entry \"$a\" matches no include any more: remove it" >&2
        status=1
    fi
done
[ "$status" -eq 0 ] || exit 1
echo "check-layers: $(echo "$all" | awk '{print $1}' | sort -u | wc -l) folders, includes point down," \
     "no cycle (${#ALLOW[@]} allowed exception(s): ${ALLOW[*]})"
