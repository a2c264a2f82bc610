#!/usr/bin/env bash
# Same-run speed comparison of canhgac-agent analyze and Suricata on one
# concatenated capture with the same rules, one core each. See README.md.
#
#   SURICATA=/path/to/suricata tests/parity/bench.sh
#
# Environment: SURICATA (required), CANHGAC, CORPUS, RULES, CLASSIFICATION,
# REFERENCE as for run.sh; OUT (default /tmp/canhgac-parity-bench);
# REPEAT (copies of the corpus in the capture, default 20); RUNS (timed runs
# of each measure, the median is reported, default 3); CPU (the core both
# tools are pinned to with taskset, default 1; empty: not pinned).
#
# Start-up: wall time of a run on a one-packet capture (rules loaded, the
# packet processed, shut down). Steady state: packets / (wall time on the
# capture - start-up), and the same with CPU time (user + sys), which a busy
# machine disturbs less. Peak RSS: /usr/bin/time's maximum resident set size on
# the capture. Suricata runs with --runmode single (one packet thread) and
# its Hyperscan cache warm; its first start-up with an empty cache is
# reported too. Both are pinned to the same single core, so that wall time
# means one core each (unpinned, Suricata's flow manager and other threads
# run on a second core). Both write alerts only (EVE alert records).
#
# Scaling (SCALE=1, the default; SCALE=0 skips it): both tools unpinned,
# with one and with two packet threads: canhgac analyze --workers 1 and 2
# (flows hashed over the workers, as capture.threads does live), Suricata
# --runmode single and --runmode autofp (its threads spread flows the same
# way). Steady state as above, each against its own start-up.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CORPUS=${CORPUS:-$(cd "$repo/.." && pwd)/shared/corpus}
OUT=${OUT:-/tmp/canhgac-parity-bench}
REPEAT=${REPEAT:-20}
RUNS=${RUNS:-3}
CPU=${CPU-1}
SCALE=${SCALE:-1}
: "${SURICATA:?set SURICATA to the suricata binary}"
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench.sh: needs GNU time (apt-get install time)" >&2; exit 2; }

RULES=${RULES:-$(ls "$CORPUS"/Suricata_Repository/*.rules)}
first_rules=$(echo "$RULES" | awk '{print $1; exit}')
CLASSIFICATION=${CLASSIFICATION:-$(dirname "$first_rules")/classification.config}
if [ -z "${REFERENCE:-}" ]; then
    REFERENCE=$(cd "$(dirname "$SURICATA")/.." && pwd)/etc/suricata/reference.config
    [ -f "$REFERENCE" ] || REFERENCE=/dev/null
fi
if [ -z "${CANHGAC:-}" ]; then
    (cd "$repo" && nice -n 19 cargo build --release -p canhgac-agent --quiet)
    CANHGAC=${CARGO_TARGET_DIR:-$repo/target}/release/canhgac-agent
fi

mkdir -p "$OUT"
rm -rf "$OUT/hs-cache" "$OUT/log"
mkdir -p "$OUT/hs-cache" "$OUT/log"
# shellcheck disable=SC2086
cat $RULES > "$OUT/all.rules"
if [ -f "$CLASSIFICATION" ]; then
    printf 'version = 1\n\n[rules]\nclassification = "%s"\n' "$CLASSIFICATION" > "$OUT/agent.toml"
else
    CLASSIFICATION=/dev/null
    printf 'version = 1\n' > "$OUT/agent.toml"
fi
# the job both tools do: Suricata does no state-secret scan
printf '\n[detect.secrets]\nenabled = false\n' >> "$OUT/agent.toml"
awk -v logdir="$OUT/log" -v cls="$CLASSIFICATION" -v ref="$REFERENCE" -v cache="$OUT/hs-cache" '
    { gsub("@LOGDIR@", logdir); gsub("@CLASSIFICATION@", cls); gsub("@REFERENCE@", ref);
      gsub("@MPM_CACHE@", "yes"); gsub("@MPM_CACHE_DIR@", cache) }
    /@EVE_TYPES@/ { print "        - alert:\n            tagged-packets: no"; next } { print }' \
    "$here/suricata.yaml.in" > "$OUT/suricata.yaml"

captures=()
while IFS=$'\t' read -r path _; do
    [ "$path" = path ] && continue
    [ -f "$CORPUS/$path" ] && captures+=("$CORPUS/$path")
done < "$CORPUS/PCAP_STATS.tsv"
cap=$OUT/corpus-x$REPEAT.pcap
[ -f "$cap" ] || python3 "$here/concat.py" "$cap" --repeat "$REPEAT" "${captures[@]}"
one=$OUT/one.pcap
[ -f "$one" ] || python3 "$here/concat.py" "$one" --limit 1 "${captures[0]}"
packets=$(python3 -c 'import os,struct,sys
f=open(sys.argv[1],"rb"); f.read(24); n=0
while True:
    h=f.read(16)
    if len(h)<16: break
    f.seek(struct.unpack("<IIII",h)[2],1); n+=1
print(n)' "$cap")
bytes=$(stat -c %s "$cap")

# one timed run: prints "wall_seconds max_rss_kib cpu_seconds"
timed() {
    local log=$OUT/time.txt
    "$TIME" -v -o "$log" "$@" > /dev/null 2> "$OUT/last.stderr" || { cat "$OUT/last.stderr" >&2; exit 1; }
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0
                    for (i = 1; i <= n; i++) s = s * 60 + p[i]; w = s }
                /User time|System time/ { c += $2 }
                /Maximum resident set size/ { r = $2 } END { print w, r, c }' "$log"
}
# the command line of TOOL on CAPTURE, in the array cmd
command_of() {
    case $1 in
        suricata) cmd=("$SURICATA" -c "$OUT/suricata.yaml" -r "$2" -S "$OUT/all.rules" -l "$OUT/log"
                       -k none --runmode single) ;;
        canhgac) cmd=("$CANHGAC" analyze --pcap "$2" --rules "$OUT/all.rules" --config "$OUT/agent.toml") ;;
        # unpinned, for the scaling table
        canhgac-1|canhgac-2) cmd=("$CANHGAC" analyze --pcap "$2" --rules "$OUT/all.rules"
                                  --config "$OUT/agent.toml" --workers "${1#canhgac-}") ;;
        suricata-1|suricata-2)
            local mode=single; [ "$1" = suricata-2 ] && mode=autofp
            cmd=("$SURICATA" -c "$OUT/suricata.yaml" -r "$2" -S "$OUT/all.rules" -l "$OUT/log"
                 -k none --runmode "$mode" --set threading.detect-thread-ratio=1.0) ;;
    esac
}
run() {
    command_of "$1" "$2"
    case $1 in *-1|*-2) ;; *) if [ -n "$CPU" ]; then cmd=(taskset -c "$CPU" "${cmd[@]}"); fi ;; esac
    timed "${cmd[@]}"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "capture: $cap ($packets packets, $bytes bytes); rules: $(grep -c '^alert\|^drop\|^pass\|^reject' "$OUT/all.rules")"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); pinned to core: ${CPU:-none}"
read -r s_cold _ < <(run suricata "$one")
declare -A start cstart rss wall cpu
for tool in canhgac suricata; do
    : > "$OUT/$tool.start"
    for _ in $(seq "$RUNS"); do run $tool "$one" >> "$OUT/$tool.start"; done
    : > "$OUT/$tool.full"
    for _ in $(seq "$RUNS"); do run $tool "$cap" >> "$OUT/$tool.full"; done
    start[$tool]=$(awk '{print $1}' "$OUT/$tool.start" | median)
    cstart[$tool]=$(awk '{print $3}' "$OUT/$tool.start" | median)
    wall[$tool]=$(awk '{print $1}' "$OUT/$tool.full" | median)
    cpu[$tool]=$(awk '{print $3}' "$OUT/$tool.full" | median)
    rss[$tool]=$(awk '{print $2}' "$OUT/$tool.full" | sort -g | tail -1)
done
command_of canhgac "$cap"; echo "canhgac: ${cmd[*]}"
command_of suricata "$cap"; echo "suricata: ${cmd[*]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
pps() { awk -v p="$packets" -v w="$1" -v s="$2" 'BEGIN { printf "%.0f", p / (w - s) }'; }
cp=$(pps "${wall[canhgac]}" "${start[canhgac]}")
sp=$(pps "${wall[suricata]}" "${start[suricata]}")
printf '\n| %s | canhgac | Suricata %s |\n|---|---:|---:|\n' "$packets packets, $RUNS runs (median)" \
    "$("$SURICATA" -V | grep -o '[0-9][0-9.]*' | head -1)"
printf '| wall time on the capture (s) | %s | %s |\n' "${wall[canhgac]}" "${wall[suricata]}"
printf '| start-up with the rules (s) | %s | %s (first, empty Hyperscan cache: %s) |\n' \
    "${start[canhgac]}" "${start[suricata]}" "$s_cold"
printf '| steady-state packets/s, wall time | %s | %s (canhgac %.2fx) |\n' "$cp" "$sp" "$(awk -v a="$cp" -v b="$sp" 'BEGIN{print a/b}')"
printf '| CPU time on the capture (s, user+sys) | %s | %s |\n' "${cpu[canhgac]}" "${cpu[suricata]}"
printf '| start-up CPU time (s) | %s | %s |\n' "${cstart[canhgac]}" "${cstart[suricata]}"
cc=$(pps "${cpu[canhgac]}" "${cstart[canhgac]}")
sc=$(pps "${cpu[suricata]}" "${cstart[suricata]}")
printf '| steady-state packets/s, CPU time | %s | %s (canhgac %.2fx) |\n' "$cc" "$sc" "$(awk -v a="$cc" -v b="$sc" 'BEGIN{print a/b}')"
printf '| peak RSS (MiB) | %s | %s |\n' "$((rss[canhgac] / 1024))" "$((rss[suricata] / 1024))"

[ "$SCALE" = 1 ] || exit 0
# scaling: one against two packet threads, unpinned, interleaved runs
declare -A sstart swall
for tool in canhgac-1 canhgac-2 suricata-1 suricata-2; do
    : > "$OUT/$tool.start"; : > "$OUT/$tool.full"
done
for _ in $(seq "$RUNS"); do
    for tool in canhgac-1 canhgac-2 suricata-1 suricata-2; do
        run $tool "$one" >> "$OUT/$tool.start"
        run $tool "$cap" >> "$OUT/$tool.full"
    done
done
for tool in canhgac-1 canhgac-2 suricata-1 suricata-2; do
    sstart[$tool]=$(awk '{print $1}' "$OUT/$tool.start" | median)
    swall[$tool]=$(awk '{print $1}' "$OUT/$tool.full" | median)
done
command_of canhgac-2 "$cap"; echo; echo "canhgac, two workers: ${cmd[*]}"
command_of suricata-2 "$cap"; echo "suricata, autofp: ${cmd[*]}"
printf '\n| unpinned, %s runs (median) | one thread: wall / start-up (s) | two threads: wall / start-up (s) | steady state, two against one |\n|---|---:|---:|---:|\n' "$RUNS"
for t in canhgac suricata; do
    one_pps=$(pps "${swall[$t-1]}" "${sstart[$t-1]}")
    two_pps=$(pps "${swall[$t-2]}" "${sstart[$t-2]}")
    printf '| %s | %s / %s | %s / %s | %.2fx (%s against %s packets/s) |\n' "$t" \
        "${swall[$t-1]}" "${sstart[$t-1]}" "${swall[$t-2]}" "${sstart[$t-2]}" \
        "$(awk -v a="$two_pps" -v b="$one_pps" 'BEGIN{print a/b}')" "$two_pps" "$one_pps"
done
