#!/usr/bin/env bash
# Builds release binaries and installs them with the example configuration.
# Usage: deploy/install.sh collector|agent   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
role=${1:?usage: deploy/install.sh collector|agent}
cargo build --release --locked --bin canhgac-collector --bin canhgac --bin canhgac-agent
install -d -m 0755 /etc/canhgac
case "$role" in
  collector)
    install -m 0755 target/release/canhgac-collector target/release/canhgac /usr/local/bin/
    id canhgac >/dev/null 2>&1 || useradd --system --home /var/lib/canhgac-collector --shell /usr/sbin/nologin canhgac
    [ -f /etc/canhgac/collector.toml ] || install -m 0644 deploy/collector.toml /etc/canhgac/collector.toml
    install -m 0644 deploy/canhgac-collector.service /etc/systemd/system/
    echo "next: canhgac-collector init --data-dir /var/lib/canhgac-collector --server-name YOUR.NAME"
    echo "      chown -R canhgac: /var/lib/canhgac-collector && systemctl enable --now canhgac-collector"
    ;;
  agent)
    install -m 0755 target/release/canhgac-agent /usr/local/bin/
    [ -f /etc/canhgac/agent.toml ] || install -m 0644 deploy/agent.toml /etc/canhgac/agent.toml
    install -m 0644 deploy/canhgac-agent.service /etc/systemd/system/
    echo "next: canhgac-agent enroll --collector https://SOC:7443 --token TOKEN --ca-pin PIN --state-dir /var/lib/canhgac-agent"
    echo "      edit /etc/canhgac/agent.toml (interface, indicator lists) && systemctl enable --now canhgac-agent"
    ;;
  *) echo "unknown role $role" >&2; exit 2 ;;
esac
