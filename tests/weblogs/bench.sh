#!/usr/bin/env bash
# Throughput of access-log parsing and detection on one core, against a
# same-run baseline that only reads and splits the lines:
#
#   bash tests/weblogs/bench.sh [REPEAT]
#
# The input is the real nginx log of tests/weblogs/nginx (7,942 requests
# from sqlmap, dirb, gobuster, hydra, nmap, curl payloads and a browser)
# repeated REPEAT times (default 130, about a million lines, 130 MB), once
# as combined and once as JSON. Each figure is the best of three runs of
# `canhgac-agent analyze --log` pinned to CPU 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
repeat=${1:-130}
cargo build --release --offline -q -p canhgac-agent
bin=${CARGO_TARGET_DIR:-target}/release/canhgac-agent
work=$(mktemp -d /tmp/cgw-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
for f in access.log access.json.log; do
    zcat "tests/weblogs/nginx/$f.gz" > "$work/one"
    for _ in $(seq "$repeat"); do cat "$work/one"; done > "$work/$f"
done
lines=$(wc -l < "$work/access.log")

best() { # FORMAT FILE -> best elapsed seconds of three
    local b=
    for _ in 1 2 3; do
        local s
        s=$(taskset -c 0 "$bin" analyze --log "$2" --log-format "$1" 2>&1 >/dev/null | tr ' ' '\n' | sed -n 's/^elapsed=\(.*\)s$/\1/p')
        if [ -z "$b" ] || awk "BEGIN{exit !($s < $b)}"; then b=$s; fi
    done
    echo "$b"
}

printf '%-28s %12s %14s %8s\n' input seconds lines/s ratio
for f in access.log access.json.log; do
    base=$(best lines "$work/$f")
    full=$(best auto "$work/$f")
    awk -v f="$f" -v n="$lines" -v b="$base" -v t="$full" 'BEGIN{
        printf "%-28s %12.3f %14.0f %8s\n", f " (read+split)", b, n/b, "1.00";
        printf "%-28s %12.3f %14.0f %8.2f\n", f " (parse+detect)", t, n/t, b/t }'
done
