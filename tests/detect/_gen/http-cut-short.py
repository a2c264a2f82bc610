#!/usr/bin/env python3
"""Writes http-cut-short.pcap: three HTTP connections whose capture ends
before some bodies complete (no FIN, no RST), as captures often do.

* 10.97.0.1:40001 -> 10.97.0.2:80: GET /a.exe, answered 200 with a
  Content-Length of 50,000 of which 1,200 bytes (starting "MZ") were
  captured;
* 10.97.0.1:40002 -> 10.97.0.2:80: POST /upload announcing 10,000 bytes,
  500 captured (starting "SECRET-UPLOAD"), no response;
* 10.97.0.1:40003 -> 10.97.0.2:80: GET /b.exe, complete 200 response whose
  body starts "MZ", connection closed with FIN.

Suricata inspects the unfinished transactions when the flows end; so
must canhgac (issue 10, parity harness). Deterministic; used by
tests/detect/http-unfinished-at-end."""
import struct
import sys

import tcpframes
from tcpframes import ACK, FIN, PSH, SYN

CLI, SRV = bytes([10, 97, 0, 1]), bytes([10, 97, 0, 2])
SPORT = 80


def frame(src, dst, sport, dport, seq, ack, flags, payload=b""):
    return tcpframes.frame(CLI, src, dst, sport, dport, seq, ack, flags, payload)


class Conn:
    def __init__(self, frames, cport):
        self.frames, self.cport = frames, cport
        self.cseq, self.sseq = 1000 + cport, 5000 + cport
        frames.append(frame(CLI, SRV, cport, SPORT, self.cseq, 0, SYN))
        frames.append(frame(SRV, CLI, SPORT, cport, self.sseq, self.cseq + 1, SYN | ACK))
        self.cseq += 1
        self.sseq += 1
        frames.append(frame(CLI, SRV, cport, SPORT, self.cseq, self.sseq, ACK))

    def cli(self, data, flags=PSH | ACK):
        for i in range(0, len(data), 1400):
            part = data[i:i + 1400]
            self.frames.append(frame(CLI, SRV, self.cport, SPORT, self.cseq, self.sseq, flags, part))
            self.cseq += len(part)

    def srv(self, data, flags=PSH | ACK):
        for i in range(0, len(data), 1400):
            part = data[i:i + 1400]
            self.frames.append(frame(SRV, CLI, SPORT, self.cport, self.sseq, self.cseq, flags, part))
            self.sseq += len(part)

    def ack_from_client(self):
        self.frames.append(frame(CLI, SRV, self.cport, SPORT, self.cseq, self.sseq, ACK))

    def close(self):
        f = self.frames
        f.append(frame(CLI, SRV, self.cport, SPORT, self.cseq, self.sseq, FIN | ACK))
        f.append(frame(SRV, CLI, SPORT, self.cport, self.sseq, self.cseq + 1, FIN | ACK))
        f.append(frame(CLI, SRV, self.cport, SPORT, self.cseq + 1, self.sseq + 1, ACK))


def exe(n):
    body = b"MZ" + bytes(58) + struct.pack("<I", 64) + b"PE\0\0"
    return body + bytes((i * 7) & 0xFF for i in range(n - len(body)))


def main(path):
    frames = []
    a = Conn(frames, 40001)
    a.cli(b"GET /a.exe HTTP/1.1\r\nHost: files.example\r\nUser-Agent: test\r\n\r\n")
    a.srv(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-msdownload\r\n"
          b"Content-Length: 50000\r\n\r\n" + exe(1200))
    a.ack_from_client()
    b = Conn(frames, 40002)
    b.cli(b"POST /upload HTTP/1.1\r\nHost: files.example\r\nContent-Length: 10000\r\n"
          b"Content-Type: application/octet-stream\r\n\r\n" + b"SECRET-UPLOAD" + bytes(487))
    c = Conn(frames, 40003)
    c.cli(b"GET /b.exe HTTP/1.1\r\nHost: files.example\r\nUser-Agent: test\r\n\r\n")
    c.srv(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-msdownload\r\n"
          b"Content-Length: 900\r\n\r\n" + exe(900))
    c.ack_from_client()
    c.close()
    tcpframes.write_pcap(path, frames)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http-cut-short.pcap")
