"""Shared by the synthetic capture generators in this folder: Ethernet/IPv4/
TCP frames with correct checksums, and a pcap writer (10 frames a second
from a fixed epoch, so the output is byte-for-byte reproducible)."""
import struct

MAC_C, MAC_S = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(client, src, dst, sport, dport, seq, ack, flags, payload=b""):
    """One TCP segment from `src` to `dst`; `client` is the client's address
    (its frames carry the client MAC)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    smac, dmac = (MAC_C, MAC_S) if src == client else (MAC_S, MAC_C)
    return dmac + smac + b"\x08\x00" + ip + tcp


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", t + i // 10, (i % 10) * 100_000, len(fr), len(fr)))
            f.write(fr)
