#!/usr/bin/env bash
# Ingest through PostgreSQL with one and two collector replicas, against
# the same-run sled figure, and the fail-over time of singleton work when
# the replica holding it is SIGKILLed:
#
#   sudo bash tests/pg/bench.sh [AGENTS] [SECONDS]
#
# Needs root (the cluster runs as user postgres) and Debian's postgresql
# server binaries. The cluster is a throwaway one in a temporary directory
# on loopback TCP with the server's defaults (fsync and synchronous commit
# on), so a PostgreSQL acknowledgement is as durable as a sled one (each
# batch flushed before its Ack). Every run is a fresh database or data
# directory; load is canhgac-loadgen (AGENTS simulated agents, default 40,
# flat out for SECONDS, default 15). With two replicas the agents are
# split between them, one loadgen each, and the figure is their sum.
set -euo pipefail
cd "$(dirname "$0")/../.."
agents=${1:-40}
secs=${2:-15}
cargo build --release -q -p canhgac-collector -p canhgac-cli -p canhgac-tests --bin canhgac-collector --bin canhgac --bin canhgac-loadgen
bin=${CARGO_TARGET_DIR:-target}/release
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/cg-pgbench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

pgport=$((20000 + RANDOM % 20000))
mkdir "$work/pg" && chown postgres: "$work/pg"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
    -o "-k $work/pg -p $pgport -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null

collector() { # NAME STORE-TOML -> data dir with config, initialised
    local dir=$work/$1 port=$((20000 + RANDOM % 20000))
    "$bin/canhgac-collector" init --data-dir "$dir" --server-name 127.0.0.1 --address "https://127.0.0.1:$port" >/dev/null
    printf 'version = 1\n%s\n' "$2" > "$dir/collector.toml"
    echo "$dir"
}
serve() { # DIR PORT LOG
    RUST_LOG=info "$bin/canhgac-collector" serve --data-dir "$1" --config "$1/collector.toml" --listen "127.0.0.1:$2" 2>"$3" &
    pids+=($!)
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return; sleep 0.1; done
    echo "collector on $2 did not start" >&2; cat "$3" >&2; exit 1
}
profile_for() { # DIR PORT -> a copy of the admin profile naming that port
    sed "s#^collector = .*#collector = \"https://127.0.0.1:$2\"#" "$1/operator.profile" > "$1/operator-$2.profile"
    echo "$1/operator-$2.profile"
}
rate() { sed -n 's/.*acked_per_s=\([0-9.]*\).*/\1/p' "$1" | tail -1; }
p99() { sed -n 's/.*p99_ack_ms=\([0-9.]*\).*/\1/p' "$1" | tail -1; }
createdb() { runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres "$1"; }

# sled, the baseline
d=$(collector sled "")
port=$((20000 + RANDOM % 20000))
serve "$d" "$port" "$work/sled.log"
"$bin/canhgac-loadgen" --profile "$(profile_for "$d" "$port")" --agents "$agents" --duration "$secs" --collector-pid "${pids[-1]}" > "$work/sled.out" 2>&1
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# PostgreSQL, one replica
createdb one
d=$(collector pg1 "[store]
backend = \"postgres\"
url = \"postgres://postgres@127.0.0.1:$pgport/one\"")
port=$((20000 + RANDOM % 20000))
serve "$d" "$port" "$work/pg1.log"
"$bin/canhgac-loadgen" --profile "$(profile_for "$d" "$port")" --agents "$agents" --duration "$secs" --collector-pid "${pids[-1]}" > "$work/pg1.out" 2>&1
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# PostgreSQL, two replicas on one data directory and database
createdb two
d=$(collector pg2 "[store]
backend = \"postgres\"
url = \"postgres://postgres@127.0.0.1:$pgport/two\"")
pa=$((20000 + RANDOM % 20000)); pb=$((pa + 1))
serve "$d" "$pa" "$work/pg2a.log"; a=${pids[-1]}
serve "$d" "$pb" "$work/pg2b.log"; b=${pids[-1]}
"$bin/canhgac-loadgen" --profile "$(profile_for "$d" "$pa")" --agents $((agents / 2)) --duration "$secs" --collector-pid "$a" > "$work/pg2a.out" 2>&1 &
la=$!
"$bin/canhgac-loadgen" --profile "$(profile_for "$d" "$pb")" --agents $((agents / 2)) --duration "$secs" --collector-pid "$b" > "$work/pg2b.out" 2>&1
wait $la
two=$(awk "BEGIN{print $(rate "$work/pg2a.out") + $(rate "$work/pg2b.out")}")

# fail-over: SIGKILL the replica holding the correlator lease; how long
# until the other takes it (the log's `took the lease` lines)
holder=$a; other=$pb; otherlog=$work/pg2b.log
if grep -q 'took the lease.*task="correlator"' "$work/pg2b.log"; then holder=$b; other=$pa; otherlog=$work/pg2a.log; fi
before=$(grep -c 'took the lease.*task="correlator"' "$otherlog" || true)
killed=$(date +%s.%N)
kill -9 "$holder"
for _ in $(seq 300); do
    now=$(grep -c 'took the lease.*task="correlator"' "$otherlog" || true)
    [ "$now" -gt "$before" ] && break
    sleep 0.05
done
took=$(date +%s.%N)
failover=$(awk "BEGIN{printf \"%.1f\", $took - $killed}")

s=$(rate "$work/sled.out"); o=$(rate "$work/pg1.out")
echo "agents=$agents seconds=$secs"
printf '%-28s %12s %10s %8s\n' store acked_per_s ratio p99_ms
printf '%-28s %12.0f %10s %8s\n' "sled (baseline)" "$s" 1.00 "$(p99 "$work/sled.out")"
printf '%-28s %12.0f %10.2f %8s\n' "PostgreSQL, 1 replica" "$o" "$(awk "BEGIN{print $o / $s}")" "$(p99 "$work/pg1.out")"
printf '%-28s %12.0f %10.2f %8s\n' "PostgreSQL, 2 replicas" "$two" "$(awk "BEGIN{print $two / $s}")" "$(p99 "$work/pg2a.out")/$(p99 "$work/pg2b.out")"
echo "fail-over of singleton work after SIGKILL of its holder: ${failover} s (replica on port $other took the correlator lease)"
