#!/usr/bin/env python3
"""Writes stream-once.pcap: one TCP connection (10.98.0.1:40000 ->
10.98.0.2:4444, no application protocol) in which the server sends a
marker once, then 120 more segments follow in both directions, the marker
segment is retransmitted twice, and a second marker is split over two
segments. Deterministic; used by tests/detect/stream-match-once."""
import sys

import tcpframes
from tcpframes import ACK, FIN, PSH, SYN

CLI, SRV = bytes([10, 98, 0, 1]), bytes([10, 98, 0, 2])
CPORT, SPORT = 40000, 4444


def frame(src, dst, sport, dport, seq, ack, flags, payload=b""):
    return tcpframes.frame(CLI, src, dst, sport, dport, seq, ack, flags, payload)


def main(path):
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
    tcpframes.write_pcap(path, frames)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "stream-once.pcap")
