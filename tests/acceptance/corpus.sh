#!/usr/bin/env bash
# Acceptance on the public corpus that may not be copied into the
# repository (GPL, LGPL or unlicensed: fail2ban logs, nDPI and
# chrissanders/packets captures, the ET Open rules). The files are read in
# place from ../shared/corpus next to the checkout; every check fails,
# rather than skips, when they are missing.
#
#   bash tests/acceptance/corpus.sh
#
# Runs the ignored tests that read the corpus (agent/tests/corpus.rs,
# agent/tests/host.rs, rules::tests::et_open_corpus_loads) and prints the
# `rules check` figure of the ET Open set.
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus=../shared/corpus
if [ ! -d "$corpus" ]; then
    echo "corpus.sh: $corpus is missing (expected shared/corpus next to the checkout)" >&2
    exit 2
fi
cargo test --locked --release -p canhgac-agent --test integration -- --ignored corpus:: host::acceptance_fail2ban
cargo test --locked --release -p canhgac-agent --lib -- --ignored rules::tests::et_open_corpus_loads
cargo run --locked --release -q --bin canhgac-agent -- rules check "$corpus"/Suricata_Repository/*.rules \
    --classification "$corpus"/Suricata_Repository/classification.config | sed -n '/^total:/,/^$/p'
