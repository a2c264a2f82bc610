#!/usr/bin/env bash
# Regenerates _gen/ssh-admin-automation.pcap: a real OpenSSH server in a
# network namespace; 10.97.0.1 (an administrator's host) makes 20 successful
# password logins that each run one command (automation), then 10.97.0.66
# guesses passwords (16 failed logins). The sessions are then spread
# ten seconds apart, as a scheduler would run them (respace.py). Needs root, iproute2,
# openssh-server, sshpass, python3.
set -euo pipefail
cd "$(dirname "$0")"
A=cg_ssh_a B=cg_ssh_b
tmp=$(mktemp -d)
cleanup() {
  [ -n "${sshd_pid:-}" ] && kill "$sshd_pid" 2>/dev/null || true
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
  userdel cgauto 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ip netns del $A 2>/dev/null || true
ip netns del $B 2>/dev/null || true
ip netns add $A
ip netns add $B
ip link add cg-ssh-a type veth peer name cg-ssh-b
ip link set cg-ssh-a netns $A
ip link set cg-ssh-b netns $B
ip -n $A addr add 10.97.0.1/24 dev cg-ssh-a
ip -n $A addr add 10.97.0.66/24 dev cg-ssh-a
ip -n $B addr add 10.97.0.2/24 dev cg-ssh-b
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set cg-ssh-a up
ip -n $B link set cg-ssh-b up
useradd -m cgauto 2>/dev/null || true
echo 'cgauto:automation-pw' | chpasswd
ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key"
cat > "$tmp/sshd_config" <<CONF
Port 22
ListenAddress 10.97.0.2
HostKey $tmp/host_key
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM yes
PidFile $tmp/sshd.pid
MaxStartups 100
CONF
mkdir -p /run/sshd
ip netns exec $B /usr/sbin/sshd -D -f "$tmp/sshd_config" -E "$tmp/sshd.log" &
sshd_pid=$!
sleep 1
ip netns exec $B python3 pcapcap.py cg-ssh-b "$tmp/raw.pcap" &
cap=$!
sleep 1
opts=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o PubkeyAuthentication=no -o LogLevel=ERROR)
for i in $(seq 1 20); do
  ip netns exec $A sshpass -p automation-pw ssh "${opts[@]}" -b 10.97.0.1 cgauto@10.97.0.2 'uptime' >/dev/null
done
for i in $(seq 1 16); do
  ip netns exec $A sshpass -p "guess$i" ssh "${opts[@]}" -o NumberOfPasswordPrompts=1 -b 10.97.0.66 cgauto@10.97.0.2 true 2>/dev/null || true
done
sleep 1
kill $cap; wait $cap 2>/dev/null || true
python3 respace.py "$tmp/raw.pcap" ssh-admin-automation.pcap 10
