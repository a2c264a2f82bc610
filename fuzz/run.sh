#!/usr/bin/env bash
# Coverage-guided fuzzing on the pinned stable toolchain (no nightly, no
# cargo-fuzz): builds the targets of fuzz/Cargo.toml with libFuzzer
# (compiled from C++ by libfuzzer-sys, so a C++ compiler is needed) and
# SanitizerCoverage instrumentation through codegen flags, then runs each
# target for a fixed time on a copy of its committed seed corpus.
#
#   fuzz/run.sh                      # every target, FUZZ_SECONDS (10) each
#   FUZZ_SECONDS=600 fuzz/run.sh dns # one target, longer
#   fuzz/run.sh --build              # build only
#
# Fails when a target crashes (panic, failed assertion, overflow: the build
# has debug assertions and overflow checks), runs one input longer than
# FUZZ_TIMEOUT seconds, or grows beyond FUZZ_RSS_MB. Without a sanitizer
# (none is available on stable) memory leaks are not detected. The input
# that failed is kept in fuzz/artifacts/TARGET/; reproduce it with
# `$BIN/TARGET fuzz/artifacts/TARGET/crash-...`. New inputs the run finds stay
# in a temporary directory: the committed corpus is never written.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECONDS:-10}
timeout=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
build_only=false
if [ "${1:-}" = --build ]; then
    build_only=true
    shift
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
# The explicit --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
started=$(date +%s)
cargo build --release --locked --manifest-path fuzz/Cargo.toml --target "$triple" --bins
bin=${CARGO_TARGET_DIR:-fuzz/target}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
bin=$bin/$triple/release
echo "fuzz: built in $(($(date +%s) - started)) s ($bin)"
$build_only && exit 0

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^canhgac-fuzz$')
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
printf '%-20s %10s %8s %8s %8s %6s\n' target execs exec/s cov ft corpus
for t in "${targets[@]}"; do
    [ -d "fuzz/corpus/$t" ] || { echo "fuzz: no corpus fuzz/corpus/$t" >&2; exit 1; }
    mkdir -p "$work/$t" fuzz/artifacts/"$t"
    cp -r "fuzz/corpus/$t" "$work/$t/corpus"
    set +e
    "$bin/$t" "$work/$t/corpus" \
        -max_total_time="$secs" -timeout="$timeout" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" \
        -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$work/$t/log" 2>&1
    rc=$?
    set -e
    log=$work/$t/log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-20s %10s %8s %8s %8s %6s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
    inited=$(grep -E '^#[0-9]+[[:space:]]+INITED cov: [1-9]' "$log" | head -1 || true)
    if [ "$rc" -ne 0 ] || ! grep -q '^stat::number_of_executed_units' "$log" \
        || [ "${cov:-0}" -eq 0 ] || [ -z "$inited" ]; then
        failed+=("$t")
        echo "---- $t failed (exit $rc); end of its log:" >&2
        tail -40 "$log" >&2
        ls fuzz/artifacts/"$t"/ >&2
    fi
done
echo "fuzz: ${#targets[@]} target(s), ${secs} s each, $(($(date +%s) - started)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
