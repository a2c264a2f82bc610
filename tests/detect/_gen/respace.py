#!/usr/bin/env python3
"""respace.py IN.pcap OUT.pcap SECONDS: shifts the packets of each TCP
connection so that connection n starts n*SECONDS after the first one (the
timing of a cron job), keeping the timing inside each connection. Ethernet,
IPv4; other frames keep their time."""
import struct
import sys

src, dst, gap = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(src, "rb").read()
hdr, o = data[:24], 24
pkts = []
while o + 16 <= len(data):
    sec, usec, cl, ol = struct.unpack("<IIII", data[o : o + 16])
    pkts.append([sec + usec / 1e6, data[o + 16 : o + 16 + cl], ol])
    o += 16 + cl
conns, order = {}, []
for p in pkts:
    f = p[1]
    if len(f) < 34 or f[12:14] != b"\x08\x00" or f[23] != 6:
        p.append(None)
        continue
    ihl = (f[14] & 15) * 4
    sp, dp = struct.unpack("!HH", f[14 + ihl : 18 + ihl])
    key = tuple(sorted([(f[26:30], sp), (f[30:34], dp)]))
    if key not in conns:
        conns[key] = p[0]
        order.append(key)
    p.append(key)
start = pkts[0][0] if pkts else 0
shift = {k: start + i * gap - conns[k] for i, k in enumerate(order)}
out = []
for t, f, ol, key in pkts:
    out.append((t + shift.get(key, 0.0), f, ol))
out.sort(key=lambda x: x[0])
with open(dst, "wb") as w:
    w.write(hdr)
    for t, f, ol in out:
        w.write(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)) % 1000000, len(f), ol) + f)
