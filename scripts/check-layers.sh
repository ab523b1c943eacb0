#!/usr/bin/env bash
# Checks that the top-level folders of src/ depend on each other one way: the graph of
# `#include "folder/..."` edges between folders (src/main.c counts as the folder "main";
# src/quote/, the example backend, stands alone) must have no cycle. On a cycle it prints the
# folders in it and the files whose includes make each of its edges, and exits 1.
# Run by `make test` (and so by CI). Usage: scripts/check-layers.sh [--graph]
set -euo pipefail
cd "$(dirname "$0")/.."

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
# tsort reports a loop on stderr; the folders it names are the cycle.
loop=$(echo "$all" | awk '{print $1, $2}' | sort -u | tsort 2>&1 >/dev/null | sed -n 's/^tsort: //p' | grep -v 'input contains a loop' || true)
if [ -n "$loop" ]; then
    echo "check-layers: include cycle between folders of src/:" >&2
    echo "$loop" | sort -u | sed "s/^/  /" >&2
    folders=$(echo "$loop" | tr '\n' ' ')
    echo "edges inside the cycle (from -> to: files):" >&2
    echo "$all" | while read -r from to file; do
        case " $folders " in *" $from "*) ;; *) continue ;; esac
        case " $folders " in *" $to "*) echo "  $from -> $to: $file" >&2 ;; esac
    done
    exit 1
fi
echo "check-layers: $(echo "$all" | awk '{print $1}' | sort -u | wc -l) folders, no include cycle"
