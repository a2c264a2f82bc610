#!/usr/bin/env bash
# Same-run comparison of canhgac-agent analyze --log and fail2ban on the
# same authentication logs: failures found, sources that would be banned
# (fail2ban's sshd jail replayed on fail2ban-regex's failures) against the
# sources of canhgac's auth-bruteforce alerts, and lines per second. A
# development tool like bench.sh (it reads the GPL/unlicensed corpus from
# ../shared), not part of .ci/run. Needs Debian's fail2ban.
#
#   tests/parity/fail2ban.sh
#
# Environment: CANHGAC (the agent binary; default: built in release), CORPUS,
# LOGS (the logs, with the fail2ban filter of each as LOG:FILTER; default:
# the real auth.log of elastic/examples and fail2ban's own sshd test log),
# REPEAT (copies of the first log in the speed run, default 100), OUT
# (default /tmp/canhgac-parity-fail2ban). fail2ban's jail settings are its
# sshd defaults (maxretry 5, findtime 10 min, bantime 10 min), the same
# thresholds as canhgac's auth-bruteforce detector.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CORPUS=${CORPUS:-$(cd "$repo/.." && pwd)/shared/corpus}
OUT=${OUT:-/tmp/canhgac-parity-fail2ban}
REPEAT=${REPEAT:-100}
command -v fail2ban-regex >/dev/null || { echo "fail2ban.sh: needs fail2ban (apt-get install fail2ban)" >&2; exit 2; }
if [ -z "${CANHGAC:-}" ]; then
    (cd "$repo" && nice -n 19 cargo build --release -p canhgac-agent --quiet)
    CANHGAC=${CARGO_TARGET_DIR:-$repo/target}/release/canhgac-agent
fi
default_logs=(
    "$CORPUS/elastic-examples/Machine Learning/Security Analytics Recipes/suspicious_login_activity/data/auth.log:sshd"
    "$CORPUS/fail2ban/fail2ban/tests/files/logs/sshd:sshd"
)
if [ -n "${LOGS:-}" ]; then read -r -a logs <<< "$LOGS"; else logs=("${default_logs[@]}"); fi
mkdir -p "$OUT"

echo "fail2ban $(fail2ban-regex -V 2>/dev/null | head -1); canhgac: $CANHGAC"
for spec in "${logs[@]}"; do
    log=${spec%:*}
    filter=${spec##*:}
    [ -f "$log" ] || { echo "fail2ban.sh: $log missing" >&2; exit 2; }
    name=$(basename "$log")
    fail2ban-regex -o row "$log" "$filter" > "$OUT/$name.rows" 2> "$OUT/$name.f2b.err"
    "$CANHGAC" analyze --log "$log" --eve-types alert,auth > "$OUT/$name.eve" 2> "$OUT/$name.canhgac.err"
    echo
    echo "== $log ($(wc -l < "$log") lines; fail2ban filter $filter)"
    echo "canhgac: $(tail -1 "$OUT/$name.canhgac.err")"
    python3 "$here/fail2ban_compare.py" "$OUT/$name.rows" "$OUT/$name.eve"
done

# speed: the first log repeated, both tools on the same file
first=${logs[0]%:*}
big=$OUT/repeated.log
for _ in $(seq "$REPEAT"); do cat "$first"; done > "$big"
lines=$(wc -l < "$big")
timed() {
    /usr/bin/time -f "%e %U %S" -o "$OUT/time.txt" "$@" > /dev/null 2> "$OUT/last.err" \
        || { cat "$OUT/last.err" >&2; exit 1; }
    awk '{ print $1, $2 + $3 }' "$OUT/time.txt"
}
read -r f_wall f_cpu < <(timed fail2ban-regex "$big" "${logs[0]##*:}")
read -r c_wall c_cpu < <(timed "$CANHGAC" analyze --log "$big" --eve-types alert,auth)
echo
echo "speed on $big ($lines lines, the first log x$REPEAT):"
printf '| | canhgac | fail2ban %s |\n|---|---:|---:|\n' "$(fail2ban-regex -V 2>/dev/null | head -1)"
printf '| wall time (s) | %s | %s |\n' "$c_wall" "$f_wall"
printf '| CPU time (s) | %s | %s |\n' "$c_cpu" "$f_cpu"
awk -v l="$lines" -v c="$c_cpu" -v f="$f_cpu" 'BEGIN {
    printf "| lines/s of CPU time | %.0f | %.0f (canhgac %.1fx) |\n", l / c, l / f, f / c }'
