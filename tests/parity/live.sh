#!/usr/bin/env bash
# Live capture under load: tcpreplay sends the bench capture (every corpus
# capture joined, see bench.sh) at a set rate from a network namespace over
# a veth pair; canhgac-agent captures the host end with the full ET rules,
# enrolled at a local collector, and the kernel's and the agent's counters
# say what was captured and what was dropped. Needs root and tcpreplay
# (Debian). A development tool like bench.sh, not part of .ci/run.
#
#   sudo tests/parity/live.sh                 # 1000 Mbit/s, one worker
#   sudo MBPS=1000 THREADS=2 tests/parity/live.sh
#   sudo SENSOR=suricata SURICATA=/path/to/suricata tests/parity/live.sh
#
# SENSOR=suricata runs the peer instead on the same link, rules and replay:
# Suricata (bench.sh's configuration) with AF_PACKET, TPACKET_V3, THREADS
# workers in a cluster_flow fanout group; its drops are the kernel counts it
# logs at exit.
#
# Environment: MBPS (tcpreplay rate, 0 = as fast as it can, default 1000),
# UNIQUE=1 (tcpreplay --unique-ip: each loop's flows get other addresses,
# without changing checksums, so the copies are new flows rather than
# repeats of live ones; use with REPEAT=1 LOOPS=20), THREADS
# (capture.threads, default 1), RING_MIB (capture.ring_mib; unset: the agent's default), LOOPS (times the capture is sent,
# default 1), REPEAT (copies of the corpus in the capture, default 20), BIN
# (directory of the release binaries, default target/release), CORPUS,
# RULES, OUT (default /tmp/canhgac-live).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CORPUS=${CORPUS:-$(cd "$repo/.." && pwd)/shared/corpus}
OUT=${OUT:-/tmp/canhgac-live}
MBPS=${MBPS:-1000}
THREADS=${THREADS:-1}
RING_MIB=${RING_MIB:-}
LOOPS=${LOOPS:-1}
REPEAT=${REPEAT:-20}
BIN=${BIN:-${CARGO_TARGET_DIR:-$repo/target}/release}
RULES=${RULES:-$(ls "$CORPUS"/Suricata_Repository/*.rules)}
first_rules=$(echo "$RULES" | awk '{print $1; exit}')
CLASSIFICATION=$(dirname "$first_rules")/classification.config
command -v tcpreplay >/dev/null || { echo "live.sh: needs tcpreplay (apt-get install tcpreplay)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "live.sh: run as root (namespaces, capture)" >&2; exit 2; }
SENSOR=${SENSOR:-canhgac}
for b in canhgac-collector canhgac canhgac-agent; do
    [ "$SENSOR" = suricata ] && break
    [ -x "$BIN/$b" ] || { echo "live.sh: $BIN/$b missing: cargo build --release first" >&2; exit 2; }
done

ns=cglive$$
host_if=cglh$$
ns_if=cgln$$
port=$((17000 + $$ % 1000))
mport=$((18000 + $$ % 1000))
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip link del "$host_if" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$OUT/c" "$OUT/agent"
mkdir -p "$OUT"
# shellcheck disable=SC2086
cat $RULES > "$OUT/all.rules"
cap=$OUT/corpus-x$REPEAT.pcap
if [ ! -f "$cap" ]; then
    captures=()
    while IFS=$'\t' read -r path _; do
        [ "$path" = path ] && continue
        [ -f "$CORPUS/$path" ] && captures+=("$CORPUS/$path")
    done < "$CORPUS/PCAP_STATS.tsv"
    python3 "$here/concat.py" "$cap" --repeat "$REPEAT" "${captures[@]}"
fi

ip netns add "$ns"
ip link add "$host_if" type veth peer name "$ns_if"
ip link set "$ns_if" netns "$ns"
# the corpus has frames above 1500 bytes
ip link set "$host_if" mtu 9000 up
ip -n "$ns" link set "$ns_if" mtu 9000 up

start_canhgac() {
    "$BIN/canhgac-collector" init --data-dir "$OUT/c" --server-name 127.0.0.1 \
        --address "https://127.0.0.1:$port" > "$OUT/init.log" 2>&1
    pin=$(tail -1 "$OUT/init.log" | awk '{print $NF}')
    "$BIN/canhgac-collector" serve --data-dir "$OUT/c" --listen "127.0.0.1:$port" > "$OUT/collector.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    cli() { "$BIN/canhgac" --profile "$OUT/c/operator.profile" "$@"; }
    cli agency add --code LIVE --name "Live capture bench" > /dev/null
    token=$(cli token create --agency LIVE | tail -1 | tr -d ' ')
    "$BIN/canhgac-agent" enroll --collector "https://127.0.0.1:$port" --token "$token" --ca-pin "$pin" \
        --state-dir "$OUT/agent" > "$OUT/enroll.log" 2>&1
    cat > "$OUT/agent.toml" <<EOF
version = 1
state_dir = "$OUT/agent"

[capture]
interface = "$host_if"
threads = $THREADS
${RING_MIB:+ring_mib = $RING_MIB}

[rules]
files = ["$OUT/all.rules"]
classification = "$CLASSIFICATION"

[detect.secrets]
enabled = false

[metrics]
listen = "127.0.0.1:$mport"
EOF
    "$BIN/canhgac-agent" run --config "$OUT/agent.toml" > "$OUT/agent.log" 2>&1 &
    pids+=($!)
    agent=$!
    metric() {
        curl -s "127.0.0.1:$mport/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }'
    }
    for _ in $(seq 100); do
        grep -q "capturing" "$OUT/agent.log" && curl -sf "127.0.0.1:$mport/healthz" > /dev/null && break
        sleep 0.2
    done
    sleep 1
}

start_suricata() {
    : "${SURICATA:?set SURICATA to the suricata binary}"
    local reference
    reference=$(cd "$(dirname "$SURICATA")/.." && pwd)/etc/suricata/reference.config
    [ -f "$reference" ] || reference=/dev/null
    mkdir -p "$OUT/suricata-log" "$OUT/hs-cache"
    rm -f "$OUT/suricata-log/"*
    awk -v logdir="$OUT/suricata-log" -v cls="$CLASSIFICATION" -v ref="$reference" -v cache="$OUT/hs-cache" '
        { gsub("@LOGDIR@", logdir); gsub("@CLASSIFICATION@", cls); gsub("@REFERENCE@", ref);
          gsub("@MPM_CACHE@", "yes"); gsub("@MPM_CACHE_DIR@", cache) }
        /@EVE_TYPES@/ { print "        - alert:\n            tagged-packets: no"; next }
        /^runmode:/ { print "runmode: workers"; next } { print }' \
        "$here/suricata.yaml.in" > "$OUT/suricata.yaml"
    cat >> "$OUT/suricata.yaml" <<EOF

af-packet:
  - interface: $host_if
    threads: $THREADS
    cluster-id: 98
    cluster-type: cluster_flow
    defrag: yes
    tpacket-v3: yes
    use-mmap: yes
EOF
    "$SURICATA" -c "$OUT/suricata.yaml" -S "$OUT/all.rules" --af-packet="$host_if" -k none \
        > "$OUT/suricata.out" 2>&1 &
    pids+=($!)
    agent=$!
    for _ in $(seq 300); do
        grep -q "Engine started" "$OUT/suricata-log/suricata.log" 2>/dev/null && break
        sleep 0.2
    done
    sleep 1
}

if [ "$SENSOR" = suricata ]; then start_suricata; else start_canhgac; fi

cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
before_cpu=$(cpu_of "$agent")
rate=(--mbps "$MBPS")
[ "$MBPS" = 0 ] && rate=(--topspeed)
[ -n "${UNIQUE:-}" ] && rate+=(--unique-ip)
ip netns exec "$ns" tcpreplay -i "$ns_if" "${rate[@]}" --loop "$LOOPS" --preload-pcap "$cap" \
    > "$OUT/tcpreplay.log" 2>&1
sleep 3
after_cpu=$(cpu_of "$agent")
rss=$(awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } END { printf "rss_mib=%d peak_rss_mib=%d", r / 1024, h / 1024 }' "/proc/$agent/status")
if [ "$SENSOR" = suricata ]; then
    kill -INT "$agent"
    for _ in $(seq 100); do kill -0 "$agent" 2>/dev/null || break; sleep 0.2; done
    # "device: IF: packets: N, drops: M (P%)" at exit
    read -r captured kernel < <(awk '/device: .*packets:/ { gsub(",", ""); for (i = 1; i <= NF; i++) {
            if ($i == "packets:") p += $(i + 1); if ($i == "drops:") d += $(i + 1) } }
        END { print p - d, d }' "$OUT/suricata-log/suricata.log")
    user=0
else
    captured=$(metric canhgac_agent_packets_captured_total)
    kernel=$(metric canhgac_agent_packets_dropped_kernel_total)
    user=$(metric canhgac_agent_packets_dropped_user_total)
fi
sent=$(awk '/Successful packets:/ { print $3 }' "$OUT/tcpreplay.log")
failed=$(awk '/Failed packets:/ { print $3 }' "$OUT/tcpreplay.log")
achieved=$(grep -o 'Rated: [0-9.]* Bps, [0-9.]* Mbps, [0-9.]* pps' "$OUT/tcpreplay.log" | tail -1)
echo "tcpreplay: sent=$sent failed=$failed $achieved"
echo "$SENSOR (threads=$THREADS, ring_mib=${RING_MIB:-default}): captured=$captured kernel_drops=$kernel agent_drops=$user" \
     "cpu_s=$(awk -v a="$after_cpu" -v b="$before_cpu" -v t="$tick" 'BEGIN { printf "%.2f", (a - b) / t }') $rss"
awk -v s="$sent" -v k="$kernel" -v u="$user" -v c="$captured" 'BEGIN {
    share = (s > 0) ? 100 * (k + u) / s : 0
    printf "drops: %.3f %% of the packets sent (kernel %d, agent %d; captured %d of %d)\n", share, k, u, c, s }'
