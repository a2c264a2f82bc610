#!/usr/bin/env python3
"""Writes stream-once.pcap: one TCP connection (10.98.0.1:40000 ->
10.98.0.2:4444, no application protocol) in which the server sends a
marker once, then 120 more segments follow in both directions, the marker
segment is retransmitted twice, and a second marker is split over two
segments. Deterministic; used by tests/detect/stream-match-once."""
import struct
import sys

CLI, SRV = bytes([10, 98, 0, 1]), bytes([10, 98, 0, 2])
CPORT, SPORT = 40000, 4444
MAC_C, MAC_S = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src, dst, sport, dport, seq, ack, flags, payload=b""):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    smac, dmac = (MAC_C, MAC_S) if src == CLI else (MAC_S, MAC_C)
    return dmac + smac + b"\x08\x00" + ip + tcp


def main(path):
    SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
    frames = []
    cseq, sseq = 1000, 5000
    frames.append(frame(CLI, SRV, CPORT, SPORT, cseq, 0, SYN))
    frames.append(frame(SRV, CLI, SPORT, CPORT, sseq, cseq + 1, SYN | ACK))
    cseq += 1
    sseq += 1
    frames.append(frame(CLI, SRV, CPORT, SPORT, cseq, sseq, ACK))

    def cli(data):
        nonlocal cseq
        frames.append(frame(CLI, SRV, CPORT, SPORT, cseq, sseq, PSH | ACK, data))
        cseq += len(data)

    def srv(data):
        nonlocal sseq
        frames.append(frame(SRV, CLI, SPORT, CPORT, sseq, cseq, PSH | ACK, data))
        sseq += len(data)

    cli(b"AHELLO\n")
    marker_seq = sseq
    marker = b"status MAGIC-BEACON-RESPONSE ok\n"
    srv(marker)
    for i in range(60):
        cli(b"A%04d poll\n" % i)
        srv(b"data %04d nothing to see here\n" % i)
    # the marker segment again (retransmissions): not new data
    for _ in range(2):
        frames.append(frame(SRV, CLI, SPORT, CPORT, marker_seq, cseq, PSH | ACK, marker))
    # a second marker split over two segments
    srv(b"tail SPLIT-")
    srv(b"PATTERN here\n")
    cli(b"Abye\n")
    frames.append(frame(CLI, SRV, CPORT, SPORT, cseq, sseq, FIN | ACK))
    frames.append(frame(SRV, CLI, SPORT, CPORT, sseq, cseq + 1, FIN | ACK))
    frames.append(frame(CLI, SRV, CPORT, SPORT, cseq + 1, sseq + 1, ACK))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", t + i // 10, (i % 10) * 100_000, len(fr), len(fr)))
            f.write(fr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "stream-once.pcap")
