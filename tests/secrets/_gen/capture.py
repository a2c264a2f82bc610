#!/usr/bin/env python3
"""Captures of real clients and servers moving the state-secret corpus
(tests/secrets/corpus/, written by gen.py) over HTTP, SMTP, FTP and SMB,
written to tests/secrets/captures/ with expected.tsv.

Run as root on Debian (needs iproute2, ethtool, tcpdump, curl, vsftpd,
samba, smbclient):

    apt-get install -y tcpdump ethtool curl vsftpd samba smbclient
    sudo python3 tests/secrets/_gen/capture.py

Two network namespaces joined by a veth pair: `cgcap-srv` holds the
servers (203.0.113.10 and 2001:db8::10, outside the agency's networks),
`cgcap-cli` the clients (10.20.0.5 and fd00:20::5, inside). Offloads are
off on both ends, so tcpdump (on the client's end) sees what a mirror port
would: MTU-sized segments with real checksums. Servers: a stdlib HTTP
server (Python http.server, HTTP/1.1: 100-continue, gzip, chunked), a
stdlib SMTP sink, vsftpd, Samba smbd (SMB3 with signing required,
encryption off). Clients: curl, Python smtplib and ftplib, smbclient.

Each capture moves marked documents at one level (or hard negatives) and
expected.tsv names, per expected alert, its level, channel, direction,
the SHA-256 of the object as transferred (the file, or for e-mail the
message the server received, for a gzip download the gzip body the
server sent) and whether the receiver is outside. A capture with level
`-` must raise nothing. The pcaps are committed; this script is not run
by the test suite.
"""
import gzip
import hashlib
import http.server
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(ROOT, "corpus")
OUT = os.path.join(ROOT, "captures")

SRV, CLI = "cgcap-srv", "cgcap-cli"
SRV4, CLI4 = "203.0.113.10", "10.20.0.5"
SRV6, CLI6 = "2001:db8::10", "fd00:20::5"
SMB_USER, SMB_PASS = "root", "Canhgac-capture-1"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, **kw)


def ns(name, *args, **kw):
    return sh("ip", "netns", "exec", name, *args, **kw)


def ns_popen(name, *args, **kw):
    return subprocess.Popen(["ip", "netns", "exec", name, *args], **kw)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def doc(rel):
    with open(os.path.join(CORPUS, rel), "rb") as f:
        return f.read()


# ------------------------------------------------------------- servers
# (run inside the server namespace by re-invoking this script)

class HttpHandler(http.server.BaseHTTPRequestHandler):
    """GET /<rel> the corpus file, /gz/<rel> gzip-encoded when asked,
    /chunked/<rel> in 700-byte chunks; POST and PUT bodies read and
    kept in the upload directory."""
    protocol_version = "HTTP/1.1"
    uploads = None

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = self.path.lstrip("/")
        mode = ""
        for m in ("gz/", "chunked/"):
            if path.startswith(m):
                mode, path = m, path[len(m):]
        data = doc(path)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode == "gz/" and "gzip" in self.headers.get("Accept-Encoding", ""):
            data = gzip.compress(data, mtime=0)
            self.send_header("Content-Encoding", "gzip")
        if mode == "chunked/":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 700):
                c = data[i:i + 700]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = bytearray()
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(n)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        name = "%d-%s" % (time.monotonic_ns(), self.command)
        with open(os.path.join(self.uploads, name), "wb") as f:
            f.write(body)
        self.send_response(201)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    do_PUT = do_POST


def serve_http(uploads):
    HttpHandler.uploads = uploads

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server((SRV4, 80), HttpHandler).serve_forever()


class SmtpHandler(socketserver.StreamRequestHandler):
    """An SMTP sink: every message after DATA, dot-stuffing removed,
    written to the spool directory as received."""
    spool = None

    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 mx.example.net ESMTP canhgac-capture")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                self.wfile.write(b"250-mx.example.net\r\n250-8BITMIME\r\n250-SIZE 10485760\r\n250 SMTPUTF8\r\n")
            elif cmd.startswith(b"HELO") or cmd.startswith(b"MAIL") or cmd.startswith(b"RCPT") or cmd == b"RSET":
                self.reply("250 ok")
            elif cmd == b"DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                msg = bytearray()
                while True:
                    l = self.rfile.readline()
                    if not l or l == b".\r\n":
                        break
                    msg += l[1:] if l.startswith(b"..") else l
                with open(os.path.join(self.spool, "%d.eml" % time.monotonic_ns()), "wb") as f:
                    f.write(msg)
                self.reply("250 queued")
            elif cmd == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


def serve_smtp(spool):
    SmtpHandler.spool = spool

    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server((SRV4, 25), SmtpHandler).serve_forever()


# ------------------------------------------------------------- network

def net_up():
    net_down()
    sh("ip", "netns", "add", SRV)
    sh("ip", "netns", "add", CLI)
    sh("ip", "link", "add", "cgcap-s", "netns", SRV, "type", "veth", "peer", "name", "cgcap-c", "netns", CLI)
    for n, dev, a4, a6, p4, p6 in [(SRV, "cgcap-s", SRV4, SRV6, CLI4, CLI6), (CLI, "cgcap-c", CLI4, CLI6, SRV4, SRV6)]:
        ns(n, "ip", "link", "set", "lo", "up")
        ns(n, "ip", "addr", "add", a4 + "/32", "dev", dev)
        ns(n, "ip", "-6", "addr", "add", a6 + "/128", "dev", dev, "nodad")
        ns(n, "ip", "link", "set", dev, "up")
        ns(n, "ip", "route", "add", p4 + "/32", "dev", dev)
        ns(n, "ip", "-6", "route", "add", p6 + "/128", "dev", dev)
        # what a mirror port sees: no segmentation or checksum offload
        ns(n, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def net_down():
    for n in (SRV, CLI):
        sh("ip", "netns", "del", n, check=False, stderr=subprocess.DEVNULL)


class Capture:
    """tcpdump on the client's end of the veth for one scenario."""

    def __init__(self, name):
        self.path = os.path.join(OUT, name)
        self.p = ns_popen(CLI, "tcpdump", "-i", "cgcap-c", "-s", "0", "--immediate-mode", "-U", "-w", self.path, "tcp",
                          stderr=subprocess.PIPE)
        # tcpdump says "listening on" once the socket is up
        self.p.stderr.readline()
        time.sleep(0.3)

    def stop(self):
        time.sleep(0.5)
        self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=10)
        err = self.p.stderr.read().decode()
        counts = {" ".join(l.split()[1:]): int(l.split()[0]) for l in err.splitlines() if l[:1].isdigit()}
        got, seen = counts.get("packets captured", 0), counts.get("packets received by filter", -1)
        if got == 0 or got != seen or counts.get("packets dropped by kernel", 1) != 0:
            sys.exit("tcpdump lost packets for %s: %s" % (self.path, err))


# ------------------------------------------------------------- scenarios

EXPECTED = []  # (pcap, level, channel, direction, sha256, outside, document)


def expect(pcap, level, channel, direction, digest, outside, document):
    EXPECTED.append((pcap, level, channel, direction, digest, "true" if outside else "false", document))


def curl(*args):
    ns(CLI, "curl", "-sS", "--noproxy", "*", "-o", "/dev/null", *args)


def http_scenarios():
    url = "http://%s" % SRV4
    # multipart form upload (curl sends Expect: 100-continue for it)
    rel = "docx/tuyet-mat.body.docx"
    c = Capture("http-curl-multipart-tuyet-mat.pcap")
    curl("-F", "f=@%s;filename=bao-cao.docx" % os.path.join(CORPUS, rel), url + "/upload")
    c.stop()
    expect("http-curl-multipart-tuyet-mat.pcap", "tuyet-mat", "http", "to_server", sha(doc(rel)), True, rel)
    # raw PUT and a chunked download of the same level over one connection
    rel, rel2 = "pdf/toi-mat.cid.pdf", "office/toi-mat.xlsx"
    c = Capture("http-curl-put-chunked-toi-mat.pcap")
    curl("-T", os.path.join(CORPUS, rel), url + "/put/van-ban.pdf", "--next", "-o", "/dev/null",
         url + "/chunked/" + rel2)
    c.stop()
    expect("http-curl-put-chunked-toi-mat.pcap", "toi-mat", "http", "to_server", sha(doc(rel)), True, rel)
    expect("http-curl-put-chunked-toi-mat.pcap", "toi-mat", "http", "to_client", sha(doc(rel2)), False, rel2)
    # a longer file sent chunked (curl reads it from standard input)
    rel = "docx/tuyet-mat.long.docx"
    c = Capture("http-curl-chunked-upload-tuyet-mat.pcap")
    with open(os.path.join(CORPUS, rel), "rb") as f:
        ns(CLI, "curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-H", "Transfer-Encoding: chunked",
           "-T", "-", url + "/put/bao-cao-dai.docx", stdin=f)
    c.stop()
    expect("http-curl-chunked-upload-tuyet-mat.pcap", "tuyet-mat", "http", "to_server", sha(doc(rel)), True, rel)
    # gzip-encoded download
    rel = "html/mat.utf-8.html"
    c = Capture("http-curl-gzip-mat.pcap")
    curl("--compressed", url + "/gz/" + rel)
    c.stop()
    expect("http-curl-gzip-mat.pcap", "mat", "http", "to_client", sha(gzip.compress(doc(rel), mtime=0)), False, rel)
    # hard negatives: an upload, a gzip download, a chunked download
    c = Capture("http-curl-negative.pcap")
    curl("-F", "f=@%s" % os.path.join(CORPUS, "negative/neg-mat-khau.docx"), url + "/upload",
         "--next", "-o", "/dev/null", "--compressed", url + "/gz/negative/neg-toi-mat-thu.utf-8.txt",
         "--next", "-o", "/dev/null", url + "/chunked/negative/neg-inline.docx")
    c.stop()
    expect("http-curl-negative.pcap", "-", "http", "-", "-", False, "negative/neg-mat-khau.docx "
           "negative/neg-toi-mat-thu.utf-8.txt negative/neg-inline.docx")


SMTP_CLIENT = r"""
import smtplib, sys
from email.message import EmailMessage
host, subject, *files = sys.argv[1:]
m = EmailMessage()
m["From"] = "vanthu@ubnd.example.vn"
m["To"] = "nhan@example.net"
m["Subject"] = subject
m.set_content("Kính gửi anh chị,\nXin gửi tài liệu kèm theo.\n")
for f in files:
    data = open(f, "rb").read()
    m.add_attachment(data, maintype="application", subtype="octet-stream", filename=f.rsplit("/", 1)[-1])
with smtplib.SMTP(host, 25) as s:
    s.send_message(m)
"""


def smtp_scenarios(spool):
    for pcap, level, rels in [
        ("smtp-smtplib-mat.pcap", "mat", ["docx/mat.body.docx"]),
        ("smtp-smtplib-toi-mat.pcap", "toi-mat", ["text/toi-mat.tcvn3.txt"]),
        ("smtp-smtplib-tuyet-mat.pcap", "tuyet-mat", ["pdf/tuyet-mat.tcvn3.pdf"]),
        ("smtp-smtplib-negative.pcap", "-", ["negative/neg-bi-mat.docx", "negative/neg-mat-do.vni.txt"]),
    ]:
        before = set(os.listdir(spool))
        c = Capture(pcap)
        ns(CLI, sys.executable, "-c", SMTP_CLIENT, SRV4, "Tai lieu", *[os.path.join(CORPUS, r) for r in rels])
        c.stop()
        (new,) = set(os.listdir(spool)) - before
        with open(os.path.join(spool, new), "rb") as f:
            msg = f.read()
        if level == "-":
            expect(pcap, "-", "smtp", "-", "-", False, " ".join(rels))
        else:
            expect(pcap, level, "smtp", "to_server", sha(msg), True, rels[0])


FTP_CLIENT = r"""
import ftplib, io, sys
host, mode, op, local, remote = sys.argv[1:]
f = ftplib.FTP(host, timeout=10)
f.login()
f.set_pasv(mode == "passive")
f.cwd("up")
if op == "stor":
    with open(local, "rb") as fh:
        f.storbinary("STOR " + remote, fh)
else:
    buf = io.BytesIO()
    f.retrbinary("RETR " + remote, buf.write)
f.quit()
"""

VSFTPD_CONF = """listen=NO
listen_ipv6=YES
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_world_readable_only=NO
anon_root={root}
secure_chroot_dir={empty}
connect_from_port_20=NO
port_enable=YES
pasv_enable=YES
pasv_min_port=50000
pasv_max_port=50100
seccomp_sandbox=NO
isolate_network=NO
xferlog_enable=NO
anon_umask=022
"""


def ftp_scenarios(tmp):
    root = os.path.join(tmp, "ftp")
    up = os.path.join(root, "up")
    empty = os.path.join(tmp, "ftp-empty")
    os.makedirs(up)
    os.makedirs(empty)
    os.chmod(root, 0o555)
    shutil.chown(up, "ftp", "ftp")
    os.chmod(up, 0o777)
    # files the client downloads
    for rel, name in [("rtf/tuyet-mat.tcvn3.rtf", "quyet-dinh.rtf"), ("negative/neg-mat-ong.docx", "mat-ong.docx")]:
        shutil.copy(os.path.join(CORPUS, rel), os.path.join(up, name))
        os.chmod(os.path.join(up, name), 0o644)
    conf = os.path.join(tmp, "vsftpd.conf")
    with open(conf, "w") as f:
        f.write(VSFTPD_CONF.format(root=root, empty=empty))
    server = ns_popen(SRV, "vsftpd", conf)
    time.sleep(1)
    try:
        def ftp(host, mode, op, local, remote):
            ns(CLI, sys.executable, "-c", FTP_CLIENT, host, mode, op, local, remote)

        rel = "legacy/mat.tcvn3.doc"
        c = Capture("ftp-ftplib-pasv-mat.pcap")
        ftp(SRV4, "passive", "stor", os.path.join(CORPUS, rel), "bao-cao.doc")
        c.stop()
        expect("ftp-ftplib-pasv-mat.pcap", "mat", "ftp-data", "to_server", sha(doc(rel)), True, rel)
        # active mode: the server connects to the client, which sends the
        # file as the data connection's server (direction to_client)
        rel = "office/toi-mat.xlsx"
        c = Capture("ftp-ftplib-port-toi-mat.pcap")
        ftp(SRV4, "active", "stor", os.path.join(CORPUS, rel), "so-lieu.xlsx")
        c.stop()
        expect("ftp-ftplib-port-toi-mat.pcap", "toi-mat", "ftp-data", "to_client", sha(doc(rel)), True, rel)
        # IPv6: ftplib uses EPSV (passive) and EPRT (active)
        rel = "rtf/tuyet-mat.tcvn3.rtf"
        rel2 = "archive/tuyet-mat.zip"
        c = Capture("ftp-ftplib-ipv6-tuyet-mat.pcap")
        ftp(SRV6, "passive", "retr", "-", "quyet-dinh.rtf")
        ftp(SRV6, "active", "stor", os.path.join(CORPUS, rel2), "luu-tru.zip")
        c.stop()
        expect("ftp-ftplib-ipv6-tuyet-mat.pcap", "tuyet-mat", "ftp-data", "to_client", sha(doc(rel)), False, rel)
        expect("ftp-ftplib-ipv6-tuyet-mat.pcap", "tuyet-mat", "ftp-data", "to_client", sha(doc(rel2)), True, rel2)
        c = Capture("ftp-ftplib-negative.pcap")
        ftp(SRV4, "passive", "stor", os.path.join(CORPUS, "negative/neg-bao-mat.tcvn3.txt"), "quy-che.txt")
        ftp(SRV4, "active", "retr", "-", "mat-ong.docx")
        c.stop()
        expect("ftp-ftplib-negative.pcap", "-", "ftp-data", "-", "-", False,
               "negative/neg-bao-mat.tcvn3.txt negative/neg-mat-ong.docx")
    finally:
        server.terminate()
        server.wait()


SMB_CONF = """[global]
workgroup = CANHGAC
server role = standalone server
disable netbios = yes
smb ports = 445
interfaces = {srv}
bind interfaces only = yes
server min protocol = SMB3
server signing = mandatory
smb2 max read = 32768
server smb encrypt = off
passdb backend = tdbsam:{tmp}/passdb.tdb
private dir = {tmp}/private
lock directory = {tmp}/lock
state directory = {tmp}/state
cache directory = {tmp}/cache
pid directory = {tmp}/run
ncalrpc dir = {tmp}/ncalrpc
log file = {tmp}/log.smbd
load printers = no
printing = bsd
printcap name = /dev/null
disable spoolss = yes

[share]
path = {share}
writable = yes
"""


def smb_scenarios(tmp):
    d = os.path.join(tmp, "smb")
    share = os.path.join(d, "share")
    for sub in ["private", "lock", "state", "cache", "run", "ncalrpc", "share"]:
        os.makedirs(os.path.join(d, sub))
    for rel, name in [("pdf/mat.tcvn3.pdf", "to-trinh.pdf"), ("negative/neg-inline.docx", "thong-bao.docx")]:
        shutil.copy(os.path.join(CORPUS, rel), os.path.join(share, name))
    conf = os.path.join(d, "smb.conf")
    with open(conf, "w") as f:
        f.write(SMB_CONF.format(srv=SRV4, tmp=d, share=share))
    sh("smbpasswd", "-c", conf, "-a", "-s", SMB_USER, input=("%s\n%s\n" % (SMB_PASS, SMB_PASS)).encode(),
       stdout=subprocess.DEVNULL)
    # its own session: smbd signals its whole process group on exit
    server = ns_popen(SRV, "smbd", "--foreground", "--no-process-group", "--configfile=" + conf,
                      start_new_session=True)
    time.sleep(2)
    try:
        def smbclient(commands):
            ns(CLI, "smbclient", "//%s/share" % SRV4, "-U", "%s%%%s" % (SMB_USER, SMB_PASS), "-m", "SMB3",
               "--use-kerberos=off", "--option=client signing=required", "--option=client smb encrypt=off",
               "--option=client min protocol=SMB3", "-c", commands, stdout=subprocess.DEVNULL)

        def path(rel):
            return os.path.join(CORPUS, rel)

        rel = "pdf/mat.tcvn3.pdf"
        c = Capture("smb-smbclient-get-mat.pcap")
        smbclient("get to-trinh.pdf /dev/null")
        c.stop()
        expect("smb-smbclient-get-mat.pcap", "mat", "smb", "to_client", sha(doc(rel)), False, rel)
        rel = "docx/toi-mat.body.docx"
        c = Capture("smb-smbclient-put-toi-mat.pcap")
        smbclient("put %s bao-cao.docx" % path(rel))
        c.stop()
        expect("smb-smbclient-put-toi-mat.pcap", "toi-mat", "smb", "to_server", sha(doc(rel)), True, rel)
        # the longer file goes up in one multi-credit WRITE and comes back
        # in several READs of at most 32 KiB (`smb2 max read`), pipelined
        rel, rel2 = "legacy/tuyet-mat.utf16.doc", "docx/tuyet-mat.long.docx"
        c = Capture("smb-smbclient-put-get-tuyet-mat.pcap")
        smbclient("put %s van-ban.doc; get van-ban.doc /dev/null; put %s bao-cao-dai.docx; "
                  "get bao-cao-dai.docx /dev/null" % (path(rel), path(rel2)))
        c.stop()
        for r in (rel, rel2):
            expect("smb-smbclient-put-get-tuyet-mat.pcap", "tuyet-mat", "smb", "to_server", sha(doc(r)), True, r)
            expect("smb-smbclient-put-get-tuyet-mat.pcap", "tuyet-mat", "smb", "to_client", sha(doc(r)), False, r)
        c = Capture("smb-smbclient-negative.pcap")
        smbclient("put %s quy-che.docx; get thong-bao.docx /dev/null" % path("negative/neg-bao-mat.docx"))
        c.stop()
        expect("smb-smbclient-negative.pcap", "-", "smb", "-", "-", False,
               "negative/neg-bao-mat.docx negative/neg-inline.docx")
    finally:
        server.terminate()
        server.wait()


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-http":
        return serve_http(sys.argv[2])
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-smtp":
        return serve_smtp(sys.argv[2])
    if os.geteuid() != 0:
        sys.exit("capture.py: run as root (network namespaces, tcpdump, smbd)")
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".pcap"):
            os.remove(os.path.join(OUT, f))
    tmp = tempfile.mkdtemp(prefix="cgcap-")
    os.chmod(tmp, 0o755)
    net_up()
    servers = []
    try:
        uploads, spool = os.path.join(tmp, "uploads"), os.path.join(tmp, "spool")
        os.makedirs(uploads)
        os.makedirs(spool)
        servers.append(ns_popen(SRV, sys.executable, os.path.abspath(__file__), "--serve-http", uploads))
        servers.append(ns_popen(SRV, sys.executable, os.path.abspath(__file__), "--serve-smtp", spool))
        time.sleep(1)
        http_scenarios()
        smtp_scenarios(spool)
        ftp_scenarios(tmp)
        smb_scenarios(tmp)
    finally:
        for s in servers:
            s.terminate()
            s.wait()
        net_down()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(OUT, "expected.tsv"), "w") as f:
        f.write("# pcap\tlevel\tchannel\tdirection\tsha256\toutside\tdocument (written by _gen/capture.py)\n")
        for row in EXPECTED:
            f.write("\t".join(row) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, p)) for p in os.listdir(OUT) if p.endswith(".pcap"))
    print("wrote %d captures, %d bytes" % (len({r[0] for r in EXPECTED}), total))


if __name__ == "__main__":
    main()
