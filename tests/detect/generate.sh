#!/usr/bin/env bash
# Regenerates the captures in tests/detect/_gen/ with real tools in network
# namespaces joined by a veth pair: nmap scans, an ICMP tunnel-like echo
# stream, periodic connections. Needs root, iproute2, nmap, tcpdump, python3.
# The captures are committed; run this only to refresh them.
set -euo pipefail
cd "$(dirname "$0")"
out=$PWD/_gen
A=cg_gen_a B=cg_gen_b
cleanup() {
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add $A
ip netns add $B
ip link add cg-gen-a type veth peer name cg-gen-b
ip link set cg-gen-a netns $A
ip link set cg-gen-b netns $B
ip -n $A addr add 10.99.0.1/24 dev cg-gen-a
ip -n $B addr add 10.99.0.2/24 dev cg-gen-b
for i in $(seq 10 40); do ip -n $B addr add 10.99.0.$i/24 dev cg-gen-b; done
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set cg-gen-a up
ip -n $B link set cg-gen-b up
sleep 1

# Something listening on the target, so that scans find open ports too.
ip netns exec $B python3 -m http.server 80 --bind 10.99.0.2 >/dev/null 2>&1 &
web=$!
ip netns exec $B python3 -c '
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for p in (22, 443, 8443):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
' &
listeners=$!
sleep 1

capture() { # name, then the command to run in namespace A
  local name=$1; shift
  ip netns exec $B tcpdump -i cg-gen-b -s 0 -U -w "$out/$name.pcap" 2>/dev/null &
  local dump=$!
  sleep 1
  ip netns exec $A "$@" >/dev/null 2>&1 || true
  sleep 1
  kill $dump; wait $dump 2>/dev/null || true
}

# Vertical SYN scan of 1000 ports of one host.
capture nmap-syn-vertical nmap -n -Pn -sS -p 1-1000 --max-retries 1 10.99.0.2
# Horizontal connect scan of port 22 over 31 hosts.
capture nmap-connect-horizontal nmap -n -Pn -sT -p 22 --max-retries 1 10.99.0.10-40
# UDP scan (ICMP port unreachable answers).
capture nmap-udp-vertical nmap -n -Pn -sU -p 1-200 --max-retries 0 --min-rate 200 10.99.0.2
# Echo requests carrying random data, as ICMP tunnels do, and plain pings.
capture icmp-tunnel python3 -c '
import os, socket, struct, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for seq in range(40):
    data = os.urandom(512)
    hdr = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + data), 0x4242, seq) + data
    s.sendto(pkt, ("10.99.0.2", 0)); time.sleep(0.05)
'
capture ping-normal ping -c 20 -i 0.2 10.99.0.2
# A connection every 2 seconds to the same web server (beaconing).
capture beacon-http sh -c 'for i in $(seq 1 10); do python3 -c "import urllib.request; urllib.request.urlopen(\"http://10.99.0.2/\").read()"; sleep 6; done'

kill $web $listeners 2>/dev/null || true
ls -l "$out"
