#!/usr/bin/env bash
# Builds the Debian package of one side and installs it (as root).
# Usage: deploy/install.sh collector|agent
# The package (cargo-deb metadata in collector/Cargo.toml, agent/Cargo.toml)
# installs the binaries in /usr/bin, the example configuration as a conffile
# in /etc/canhgac/, the system user, the state directory and the systemd
# unit from this directory; the next steps are printed at the end (README
# "Install with the Debian packages").
set -euo pipefail
cd "$(dirname "$0")/.."
role=${1:?usage: deploy/install.sh collector|agent}
case "$role" in
  collector|agent) ;;
  *) echo "unknown role $role" >&2; exit 2 ;;
esac
command -v cargo-deb >/dev/null || cargo install cargo-deb --version 3.8.0 --locked
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo deb --locked -p "canhgac-$role" --output "$out"
dpkg -i "$out"/canhgac-"$role"_*.deb
case "$role" in
  collector)
    echo "next: runuser -u canhgac -- canhgac-collector init --data-dir /var/lib/canhgac-collector --server-name YOUR.NAME"
    echo "      systemctl enable --now canhgac-collector"
    ;;
  agent)
    echo "next: runuser -u canhgac-agent -- canhgac-agent enroll --collector https://SOC:7443 --token TOKEN --ca-pin PIN --state-dir /var/lib/canhgac-agent"
    echo "      edit /etc/canhgac/agent.toml (interface, indicator lists) && systemctl enable --now canhgac-agent"
    ;;
esac
