#!/usr/bin/env bash
# Parity harness: runs Suricata and `canhgac-agent analyze` on the same
# captures with the same rules, then compares their EVE output
# (compare.py). A development tool, not part of .ci/run. See README.md.
#
#   SURICATA=/path/to/suricata tests/parity/run.sh [CAPTURE...]
#
# Environment:
#   SURICATA        Suricata binary (required)
#   CANHGAC         canhgac-agent binary (default: built with
#                   `cargo build --release -p canhgac-agent` in CARGO_TARGET_DIR
#                   or ./target)
#   CORPUS          corpus directory (default: ../shared/corpus next to the repo)
#   RULES           rule files, space separated (default: CORPUS/Suricata_Repository/*.rules)
#   CLASSIFICATION  classification.config (default: next to the first rule file)
#   REFERENCE       Suricata reference.config (default: the one installed next
#                   to SURICATA, else none)
#   OUT             output directory (default: /tmp/canhgac-parity)
#   JOBS            captures run at the same time (default 1)
#   SAMPLE          EVE dns/tls/http records compared per type (default 300)
#   SKIP_RUN=1      only compare what is already in OUT
# Options given to compare.py after `--` (e.g. `-- --flows 5`).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CORPUS=${CORPUS:-$(cd "$repo/.." && pwd)/shared/corpus}
OUT=${OUT:-/tmp/canhgac-parity}
JOBS=${JOBS:-1}
SAMPLE=${SAMPLE:-300}

compare_args=()
captures=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; compare_args=("$@"); break; fi
    captures+=("$1"); shift
done

if [ -z "${SURICATA:-}" ] && [ -z "${SKIP_RUN:-}" ]; then
    echo "run.sh: set SURICATA to the suricata binary (see tests/parity/README.md)" >&2
    exit 2
fi

if [ -z "${SKIP_RUN:-}" ]; then
    # --- captures ---------------------------------------------------------
    if [ ${#captures[@]} -eq 0 ]; then
        if [ -f "$CORPUS/PCAP_STATS.tsv" ]; then
            while IFS=$'\t' read -r path _; do
                [ "$path" = path ] && continue
                [ -f "$CORPUS/$path" ] && captures+=("$CORPUS/$path")
            done < "$CORPUS/PCAP_STATS.tsv"
        fi
        if [ ${#captures[@]} -eq 0 ]; then
            while IFS= read -r -d '' f; do captures+=("$f"); done < <(
                find "$CORPUS" -type f \( -name '*.pcap' -o -name '*.pcapng' \) -print0 | sort -z)
        fi
    fi
    [ ${#captures[@]} -gt 0 ] || { echo "run.sh: no captures" >&2; exit 2; }

    # --- rules: one file, the same bytes for both tools ---------------------
    if [ -z "${RULES:-}" ]; then
        RULES=$(ls "$CORPUS"/Suricata_Repository/*.rules)
    fi
    first_rules=$(echo "$RULES" | awk '{print $1; exit}')
    CLASSIFICATION=${CLASSIFICATION:-$(dirname "$first_rules")/classification.config}
    if [ -z "${REFERENCE:-}" ]; then
        REFERENCE=$(cd "$(dirname "$SURICATA")/.." && pwd)/etc/suricata/reference.config
        [ -f "$REFERENCE" ] || REFERENCE=/dev/null
    fi
    if [ -z "${CANHGAC:-}" ]; then
        target=${CARGO_TARGET_DIR:-$repo/target}
        (cd "$repo" && nice -n 19 cargo build --release -p canhgac-agent --quiet)
        CANHGAC=$target/release/canhgac-agent
    fi

    rm -rf "$OUT/cases"
    mkdir -p "$OUT/cases" "$OUT/hs-cache"
    # shellcheck disable=SC2086
    cat $RULES > "$OUT/all.rules"
    if [ -f "$CLASSIFICATION" ]; then
        printf 'version = 1\n\n[rules]\nclassification = "%s"\n' "$CLASSIFICATION" > "$OUT/agent.toml"
    else
        CLASSIFICATION=/dev/null
        printf 'version = 1\n' > "$OUT/agent.toml"
    fi

    eve_types='        - alert:
            tagged-packets: no
        - http:
            extended: yes
        - dns
        - tls:
            extended: yes'
    awk -v types="$eve_types" -v logdir="$OUT" -v cls="$CLASSIFICATION" \
        -v ref="$REFERENCE" -v cache="$OUT/hs-cache" '
        { gsub("@LOGDIR@", logdir); gsub("@CLASSIFICATION@", cls); gsub("@REFERENCE@", ref);
          gsub("@MPM_CACHE@", "yes"); gsub("@MPM_CACHE_DIR@", cache) }
        /@EVE_TYPES@/ { print types; next } { print }' \
        "$here/suricata.yaml.in" > "$OUT/suricata.yaml"

    {
        echo "suricata: $("$SURICATA" -V 2>&1 | head -1)"
        echo "canhgac: $CANHGAC ($(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD -- agent || echo +dirty))"
        echo "rules: $(echo $RULES | wc -w) files, $(grep -c '^alert\|^drop\|^pass\|^reject' "$OUT/all.rules") rules"
        echo "captures: ${#captures[@]}"
    } > "$OUT/run-info.txt"
    cat "$OUT/run-info.txt"

    # one directory per capture: name, suricata/, canhgac.json
    run_one() {
        local i=$1 cap=$2 d
        d=$OUT/cases/$(printf '%03d' "$i")
        mkdir -p "$d/suricata"
        printf '%s\n' "$cap" > "$d/capture"
        "$SURICATA" -c "$OUT/suricata.yaml" -r "$cap" -S "$OUT/all.rules" -l "$d/suricata" \
            -k none --runmode single > "$d/suricata/stdout" 2>&1 || echo "suricata failed on $cap" >&2
        "$CANHGAC" analyze --pcap "$cap" --rules "$OUT/all.rules" --config "$OUT/agent.toml" \
            --eve-types alert,dns,tls,http > "$d/canhgac.json" 2> "$d/canhgac.stderr" \
            || echo "canhgac failed on $cap" >&2
    }
    export -f run_one
    export SURICATA CANHGAC OUT
    i=0
    for cap in "${captures[@]}"; do
        i=$((i + 1))
        printf '%s\t%s\n' "$i" "$cap"
    done > "$OUT/captures.tsv"
    started=$(date +%s)
    while IFS=$'\t' read -r i cap; do
        printf '%s\0%s\0' "$i" "$cap"
    done < "$OUT/captures.tsv" | nice -n 19 xargs -0 -n 2 -P "$JOBS" bash -c 'run_one "$0" "$1"'
    echo "ran ${#captures[@]} captures in $(( $(date +%s) - started )) s"
fi

python3 "$here/compare.py" --sample "$SAMPLE" "${compare_args[@]}" "$OUT"
