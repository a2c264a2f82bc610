#!/usr/bin/env python3
"""Concatenate captures (pcap or pcapng) into one Ethernet pcap, repeated.

    concat.py OUT.pcap [--repeat N] [--limit PACKETS] CAPTURE...

Every capture is shifted in time to start one second after the previous one
ended, so that time only moves forward (flows of one copy time out before the
next copy reuses their addresses); a gap of more than an hour inside a capture
is shortened to an hour. Raw IP (101), Linux cooked (113) and BSD
loopback (0) frames get an Ethernet header so that one link type holds them
all (libpcap reads one link type per file). Python 3 standard library only.
"""

import argparse
import struct
import sys

ETH = 1
MAX_GAP = 3600 * 1_000_000_000
ETH_HDR_SRC = bytes.fromhex("020000000001")
ETH_HDR_DST = bytes.fromhex("020000000002")


def to_ethernet(linktype, data):
    """The frame with an Ethernet header, or None when it cannot have one."""
    if linktype == ETH:
        return data
    if linktype in (101, 12, 14):  # raw IP
        if not data:
            return None
        etype = 0x86DD if data[0] >> 4 == 6 else 0x0800
        return ETH_HDR_DST + ETH_HDR_SRC + struct.pack(">H", etype) + data
    if linktype == 113:  # Linux cooked capture v1
        if len(data) < 16:
            return None
        return ETH_HDR_DST + ETH_HDR_SRC + data[14:16] + data[16:]
    if linktype == 0:  # BSD loopback: 4-byte address family, host order
        if len(data) < 4:
            return None
        fam = struct.unpack("<I", data[:4])[0]
        if fam > 0xFFFF:
            fam = struct.unpack(">I", data[:4])[0]
        etype = 0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else None
        if etype is None:
            return None
        return ETH_HDR_DST + ETH_HDR_SRC + struct.pack(">H", etype) + data[4:]
    return None


def read_pcap(f, head):
    magic = head[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}[magic]
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    rest = f.read(20)
    linktype = struct.unpack(endian + "I", rest[16:20])[0] & 0x0FFFFFFF
    while True:
        h = f.read(16)
        if len(h) < 16:
            return
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", h)
        data = f.read(incl)
        if len(data) < incl:
            return
        yield sec * 1_000_000_000 + (frac if nano else frac * 1000), linktype, data


def read_pcapng(f, head):
    buf = head + f.read()
    pos = 0
    endian = "<"
    ifaces = []  # (linktype, ns per tick)
    while pos + 12 <= len(buf):
        btype = struct.unpack(endian + "I", buf[pos:pos + 4])[0]
        if btype == 0x0A0D0D0A:
            bom = buf[pos + 8:pos + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        blen = struct.unpack(endian + "I", buf[pos + 4:pos + 8])[0]
        if blen < 12 or pos + blen > len(buf):
            return
        body = buf[pos + 8:pos + blen - 4]
        if btype == 1:  # interface description
            linktype = struct.unpack(endian + "H", body[:2])[0]
            tick = 1000  # microseconds by default
            opos = 8
            while opos + 4 <= len(body):
                code, olen = struct.unpack(endian + "HH", body[opos:opos + 4])
                if code == 0:
                    break
                if code == 9 and olen >= 1:  # if_tsresol
                    r = body[opos + 4]
                    tick = (10 ** 9) / (2 ** (r & 0x7F) if r & 0x80 else 10 ** r)
                opos += 4 + ((olen + 3) & ~3)
            ifaces.append((linktype, tick))
        elif btype == 6:  # enhanced packet
            iface, hi, lo, incl = struct.unpack(endian + "IIII", body[:16])
            if iface < len(ifaces):
                lt, tick = ifaces[iface]
                yield int(((hi << 32) | lo) * tick), lt, body[20:20 + incl]
        elif btype == 3 and ifaces:  # simple packet
            orig = struct.unpack(endian + "I", body[:4])[0]
            yield None, ifaces[0][0], body[4:4 + orig]
        pos += blen


def packets(path):
    with open(path, "rb") as f:
        head = f.read(4)
        if head == b"\x0a\x0d\x0d\x0a":
            yield from read_pcapng(f, head)
        else:
            yield from read_pcap(f, head)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="stop after this many packets")
    args = ap.parse_args()
    loaded = []
    skipped = 0
    for path in args.captures:
        frames = []
        last = None
        for ts, lt, data in packets(path):
            e = to_ethernet(lt, data)
            if e is None:
                skipped += 1
                continue
            ts = last if ts is None else ts
            ts = 0 if ts is None else ts
            last = ts
            frames.append((ts, e))
        if frames:
            loaded.append(frames)
    n = 0
    clock = 1_600_000_000 * 1_000_000_000
    with open(args.out, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, ETH))
        for _ in range(args.repeat):
            for frames in loaded:
                t = clock
                prev = frames[0][0]
                for ts, data in frames:
                    if args.limit and n >= args.limit:
                        break
                    # time moves forward; a gap of more than an hour (merged
                    # captures span years) counts as an hour
                    t += min(max(0, ts - prev), MAX_GAP)
                    prev = ts
                    out.write(struct.pack("<IIII", t // 1_000_000_000, (t // 1000) % 1_000_000,
                                          len(data), len(data)))
                    out.write(data)
                    n += 1
                clock = t + 1_000_000_000
    print(f"{args.out}: {n} packets from {len(loaded)} captures x {args.repeat}"
          f" ({skipped} frames without an Ethernet form skipped per pass)", file=sys.stderr)


if __name__ == "__main__":
    main()
