//! State-secret markers on the wire: objects reassembled from cleartext
//! TCP flows and scanned when the flow ends.
//!
//! Each direction of a TCP flow is kept (in order, after reassembly) up to
//! `max_flow_bytes`, with all flows together bounded by
//! `max_buffered_bytes`; TLS and SSH flows are dropped as soon as they are
//! recognised. When the flow ends its objects are cut out by protocol:
//!
//! | channel | objects |
//! |---|---|
//! | `http` | each request and response body (chunked framing removed, gzip/deflate decoded), each part of a multipart body |
//! | `smtp` | each message after `DATA`, dot-stuffing removed |
//! | `pop3` | each message after a `+OK` reply to `RETR`/`TOP` |
//! | `imap` | each `{N}` literal the server sends |
//! | `smb` | each file written (WRITE requests) or read (READ responses) over SMB2/3 without encryption, put together by file id and offset |
//! | `ftp-data` | the whole data connection, for endpoints announced by `PASV`/`EPSV` replies or `PORT`/`EPRT` commands on a control connection |
//! | `tcp` | any other flow: each direction as one object |
//!
//! Each object goes through the [`Scanner`]; a marker raises one
//! `secret-marker` alert per object with the SHA-256 of the object as
//! transferred, the direction, and whether the receiving end is outside
//! the agency's networks. Nothing of the content is kept or logged.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use serde::Deserialize;
use sha2::Digest as _;
use time::OffsetDateTime;

use super::{Scanner, alert, mime};
use crate::{
    app::{AppState, Proto},
    flow::{Dir, Flow},
    spool::NewRecord,
};

/// `[detect.secrets]` in the agent configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WireConfig {
    /// Look for markers in cleartext flows (default true).
    pub enabled: bool,
    /// Bytes kept per direction of a flow (default 16 MiB); beyond, the
    /// rest is not scanned and the limit is counted.
    pub max_flow_bytes: u64,
    /// Bytes kept for all flows together (default 256 MiB).
    pub max_buffered_bytes: u64,
    /// The agency's networks: an object sent to an address outside them
    /// is marked `outside` (default: RFC 1918, loopback, link-local, ULA).
    #[serde(deserialize_with = "crate::detect::behaviour::networks")]
    pub internal_networks: Vec<ipnet::IpNet>,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            enabled: true,
            max_flow_bytes: 16 << 20,
            max_buffered_bytes: 64 << 20,
            internal_networks: crate::detect::behaviour::private_networks(),
        }
    }
}

/// Counters of the wire scanner.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WireStats {
    pub objects: u64,
    pub bytes: u64,
    pub hits: u64,
    pub limits_hit: u64,
    pub errors: u64,
}

#[derive(Default)]
struct FlowBuf {
    dirs: [Vec<u8>; 2],
    cut: bool,
}

/// Expected FTP data endpoints, bounded.
const MAX_FTP_EXPECT: usize = 4096;

pub struct WireScanner {
    scanner: Arc<Scanner>,
    cfg: WireConfig,
    flows: HashMap<u64, FlowBuf>,
    /// Flows dropped (encrypted, or not wanted).
    ignored: std::collections::HashSet<u64>,
    buffered: u64,
    ftp_expect: Vec<(IpAddr, u16)>,
    pub stats: WireStats,
}

impl WireScanner {
    pub fn new(cfg: WireConfig, scanner: Arc<Scanner>) -> WireScanner {
        WireScanner {
            scanner,
            cfg,
            flows: HashMap::new(),
            ignored: Default::default(),
            buffered: 0,
            ftp_expect: Vec::new(),
            stats: WireStats::default(),
        }
    }

    /// In-order bytes of a TCP flow in direction `dir` (after the app
    /// layer saw them).
    pub fn on_data(&mut self, flow: &Flow, dir: Dir, data: &[u8]) {
        if !self.cfg.enabled || data.is_empty() || self.ignored.contains(&flow.id) {
            return;
        }
        if matches!(flow.app.proto(), Proto::Tls | Proto::Ssh) {
            self.drop_flow(flow.id);
            return;
        }
        if flow.server.1 == 21 {
            self.ftp_control(flow, dir, data);
        }
        let d = dir as usize;
        let buf = self.flows.entry(flow.id).or_default();
        let room_flow = self.cfg.max_flow_bytes.saturating_sub(buf.dirs[d].len() as u64);
        let room_all = self.cfg.max_buffered_bytes.saturating_sub(self.buffered);
        let take = (data.len() as u64).min(room_flow).min(room_all) as usize;
        if take < data.len() && !buf.cut {
            buf.cut = true;
            self.stats.limits_hit += 1;
        }
        buf.dirs[d].extend_from_slice(&data[..take]);
        self.buffered += take as u64;
    }

    fn drop_flow(&mut self, id: u64) {
        if let Some(b) = self.flows.remove(&id) {
            self.buffered -= (b.dirs[0].len() + b.dirs[1].len()) as u64;
        }
        if self.ignored.len() > 100_000 {
            self.ignored.clear();
        }
        self.ignored.insert(id);
    }

    /// FTP control: data endpoints announced by the server (PASV, EPSV)
    /// or the client (PORT, EPRT).
    fn ftp_control(&mut self, flow: &Flow, dir: Dir, data: &[u8]) {
        for line in data.split(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let line = line.trim();
            let endpoint = match dir {
                Dir::ToClient if line.starts_with("227") => pasv(line),
                Dir::ToClient if line.starts_with("229") => epsv(line).map(|port| (flow.server.0, port)),
                Dir::ToServer => match (line.get(..5), line.get(5..)) {
                    (Some(cmd), Some(arg)) if cmd.eq_ignore_ascii_case("PORT ") => pasv(arg),
                    (Some(cmd), Some(arg)) if cmd.eq_ignore_ascii_case("EPRT ") => eprt(arg),
                    _ => None,
                },
                _ => None,
            };
            if let Some(e) = endpoint {
                if self.ftp_expect.len() >= MAX_FTP_EXPECT {
                    self.ftp_expect.remove(0);
                }
                self.ftp_expect.push(e);
            }
        }
    }

    /// A flow ended: its objects are scanned; alerts for those with a
    /// marker.
    pub fn on_end(&mut self, flow: &Flow, ts: OffsetDateTime, out: &mut Vec<NewRecord>) {
        self.ignored.remove(&flow.id);
        let Some(buf) = self.flows.remove(&flow.id) else { return };
        self.buffered -= (buf.dirs[0].len() + buf.dirs[1].len()) as u64;
        if matches!(flow.app, AppState::Tls(_) | AppState::Ssh(_)) {
            return;
        }
        let [to_server, to_client] = &buf.dirs;
        let server = flow.server;
        let mut objects: Vec<(Dir, Vec<u8>)> = Vec::new();
        let ftp_data = self.ftp_expect.iter().position(|e| *e == server);
        let channel = if let Some(i) = ftp_data {
            self.ftp_expect.remove(i);
            objects.push((Dir::ToServer, to_server.clone()));
            objects.push((Dir::ToClient, to_client.clone()));
            "ftp-data"
        } else if matches!(server.1, 445 | 139) && is_smb2(to_server) {
            objects.extend(smb2_files(to_server, to_client));
            "smb"
        } else if flow.app.proto() == Proto::Http {
            objects.extend(http_bodies(to_server, true).into_iter().map(|o| (Dir::ToServer, o)));
            objects.extend(http_bodies(to_client, false).into_iter().map(|o| (Dir::ToClient, o)));
            "http"
        } else if is_smtp(server.1, to_server, to_client) {
            objects.extend(smtp_messages(to_server).into_iter().map(|o| (Dir::ToServer, o)));
            "smtp"
        } else if server.1 == 110 || (to_client.starts_with(b"+OK") && has_command(to_server, b"RETR")) {
            objects.extend(pop3_messages(to_client).into_iter().map(|o| (Dir::ToClient, o)));
            "pop3"
        } else if server.1 == 143 {
            objects.extend(imap_literals(to_client).into_iter().map(|o| (Dir::ToClient, o)));
            "imap"
        } else if server.1 == 21 || flow.app.proto() == Proto::Dns {
            return;
        } else {
            objects.push((Dir::ToServer, to_server.clone()));
            objects.push((Dir::ToClient, to_client.clone()));
            "tcp"
        };
        for (dir, obj) in objects {
            if obj.is_empty() {
                continue;
            }
            self.stats.objects += 1;
            self.stats.bytes += obj.len() as u64;
            let report = self.scanner.scan(&obj, None);
            self.stats.limits_hit += report.limits_hit;
            self.stats.errors += report.errors;
            let Some(v) = report.verdict else { continue };
            self.stats.hits += 1;
            let receiver = if dir == Dir::ToServer { flow.server.0 } else { flow.client.0 };
            let outside = !self.cfg.internal_networks.iter().any(|n| n.contains(&receiver));
            let sha = hex::encode(sha2::Sha256::digest(&obj));
            let facts = alert::WireFacts { flow, dir, channel, outside, size: obj.len() as u64, ts };
            out.push(alert::wire_alert(&facts, &v, &sha));
        }
    }
}

/// SMB2 messages of one direction: NetBIOS session frames, each with one
/// or more (compounded) SMB2 messages.
fn smb2_messages(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= stream.len() {
        if stream[at] != 0 {
            break;
        }
        let len = usize::from(stream[at + 1]) << 16
            | usize::from(stream[at + 2]) << 8
            | usize::from(stream[at + 3]);
        let frame = &stream[at + 4..(at + 4 + len).min(stream.len())];
        at += 4 + len;
        let mut m = 0;
        while m + 64 <= frame.len() && &frame[m..m + 4] == b"\xFESMB" {
            let next =
                u32::from_le_bytes([frame[m + 20], frame[m + 21], frame[m + 22], frame[m + 23]]) as usize;
            let end = if next == 0 { frame.len() } else { m.saturating_add(next).min(frame.len()) };
            if end < m + 64 {
                break;
            }
            out.push(&frame[m..end]);
            if next == 0 || end <= m {
                break;
            }
            m = end;
        }
    }
    out
}

fn is_smb2(client: &[u8]) -> bool {
    client.len() > 8 && client[0] == 0 && &client[4..8] == b"\xFESMB"
}

fn le16(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn le32(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn le64(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

/// Files written (client to server) and read (server to client) over
/// SMB2, put together by file id at their offsets (holes stay zero), each
/// at most 64 MiB.
fn smb2_files(to_server: &[u8], to_client: &[u8]) -> Vec<(Dir, Vec<u8>)> {
    const MAX_FILE: u64 = 64 << 20;
    // ((direction, file id), content)
    type Files = Vec<((Dir, [u8; 16]), Vec<u8>)>;
    let mut files: Files = Vec::new();
    let mut put = |dir: Dir, id: [u8; 16], offset: u64, data: &[u8]| {
        let end = offset.saturating_add(data.len() as u64);
        if end > MAX_FILE {
            return;
        }
        let i = match files.iter().position(|(k, _)| *k == (dir, id)) {
            Some(i) => i,
            None => {
                files.push(((dir, id), Vec::new()));
                files.len() - 1
            }
        };
        let buf = &mut files[i].1;
        if buf.len() < end as usize {
            buf.resize(end as usize, 0);
        }
        buf[offset as usize..end as usize].copy_from_slice(data);
    };
    // READ requests: message id -> (file id, offset)
    let mut reads: Vec<(u64, [u8; 16], u64)> = Vec::new();
    for m in smb2_messages(to_server) {
        let (Some(cmd), Some(id)) = (le16(m, 12), le64(m, 24)) else { continue };
        let body = &m[64..];
        match cmd {
            // WRITE: DataOffset, Length, Offset, FileId
            9 => {
                let (Some(doff), Some(len), Some(off)) = (le16(body, 2), le32(body, 4), le64(body, 8)) else {
                    continue;
                };
                let Some(fid) = body.get(16..32).and_then(|f| <[u8; 16]>::try_from(f).ok()) else { continue };
                if let Some(data) = m.get(doff..doff.saturating_add(len)) {
                    put(Dir::ToServer, fid, off, data);
                }
            }
            // READ: Length, Offset, FileId
            8 => {
                let Some(off) = le64(body, 8) else { continue };
                let Some(fid) = body.get(16..32).and_then(|f| <[u8; 16]>::try_from(f).ok()) else { continue };
                if reads.len() < 65_536 {
                    reads.push((id, fid, off));
                }
            }
            _ => {}
        }
    }
    for m in smb2_messages(to_client) {
        let (Some(8), Some(flags), Some(id)) = (le16(m, 12), le32(m, 16), le64(m, 24)) else { continue };
        let status = le32(m, 8).unwrap_or(1);
        if flags & 1 == 0 || status != 0 {
            continue;
        }
        let body = &m[64..];
        let (Some(doff), Some(len)) = (body.get(2).map(|b| usize::from(*b)), le32(body, 4)) else { continue };
        let Some(&(_, fid, off)) = reads.iter().find(|r| r.0 == id) else { continue };
        if let Some(data) = m.get(doff..doff.saturating_add(len)) {
            put(Dir::ToClient, fid, off, data);
        }
    }
    files.into_iter().map(|((dir, _), data)| (dir, data)).collect()
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` or a PORT argument
/// (`h1,h2,h3,h4,p1,p2`).
fn pasv(line: &str) -> Option<(IpAddr, u16)> {
    let args = match line.find('(') {
        Some(i) => &line[i + 1..],
        None => line.strip_prefix("227").unwrap_or(line),
    };
    let start = args.find(|c: char| c.is_ascii_digit())?;
    let run: String = args[start..].chars().take_while(|c| c.is_ascii_digit() || *c == ',').collect();
    let nums: Vec<u8> = run.split(',').map(|n| n.parse().ok()).collect::<Option<Vec<u8>>>()?;
    let [a, b, c, d, p1, p2] = nums.as_slice() else { return None };
    Some((IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)), u16::from(*p1) << 8 | u16::from(*p2)))
}

/// `229 Entering Extended Passive Mode (|||port|)`
fn epsv(line: &str) -> Option<u16> {
    let inner = line.split('(').nth(1)?.split(')').next()?;
    inner.trim_matches('|').parse().ok()
}

/// `EPRT |proto|addr|port|`
fn eprt(arg: &str) -> Option<(IpAddr, u16)> {
    let parts: Vec<&str> = arg.trim().trim_matches('|').split('|').collect();
    let [_, addr, port] = parts.as_slice() else { return None };
    Some((addr.parse().ok()?, port.parse().ok()?))
}

fn has_command(client: &[u8], cmd: &[u8]) -> bool {
    client.split(|b| *b == b'\n').any(|l| l.len() >= cmd.len() && l[..cmd.len()].eq_ignore_ascii_case(cmd))
}

fn is_smtp(port: u16, client: &[u8], server: &[u8]) -> bool {
    matches!(port, 25 | 587 | 2525)
        || (server.starts_with(b"220") && (has_command(client, b"EHLO") || has_command(client, b"HELO")))
}

/// Messages after each `DATA` command, up to the lone dot.
fn smtp_messages(client: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < client.len() {
        let rest = &client[at..];
        let Some(p) = find_line_ci(rest, b"DATA") else { break };
        let start = at + p + rest[p..].iter().position(|b| *b == b'\n').map_or(rest.len() - p, |n| n + 1);
        let body = &client[start.min(client.len())..];
        let (msg, consumed) = dot_terminated(body);
        out.push(msg);
        at = start + consumed.max(1);
    }
    out
}

/// The position of a line that is exactly `cmd` (any case).
fn find_line_ci(data: &[u8], cmd: &[u8]) -> Option<usize> {
    let mut pos = 0;
    for line in data.split(|b| *b == b'\n') {
        let l = line.strip_suffix(b"\r").unwrap_or(line);
        if l.eq_ignore_ascii_case(cmd) {
            return Some(pos);
        }
        pos += line.len() + 1;
    }
    None
}

/// A dot-terminated block (SMTP DATA, POP3 multi-line reply) with the
/// dot-stuffing removed, and the bytes it took.
fn dot_terminated(data: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0;
    for line in data.split_inclusive(|b| *b == b'\n') {
        pos += line.len();
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content == b"." {
            return (out, pos);
        }
        out.extend_from_slice(line.strip_prefix(b".").filter(|_| line.starts_with(b"..")).unwrap_or(line));
    }
    (out, pos)
}

/// Messages of `+OK` replies to RETR/TOP (multi-line, dot-terminated).
fn pop3_messages(server: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < server.len() {
        let rest = &server[at..];
        let Some(p) = memchr::memmem::find(rest, b"+OK") else { break };
        let line_end = rest[p..].iter().position(|b| *b == b'\n').map_or(rest.len(), |n| p + n + 1);
        let body = &rest[line_end..];
        // a message starts with a header line
        if mime::looks_like(body) {
            let (msg, used) = dot_terminated(body);
            out.push(msg);
            at += line_end + used.max(1);
        } else {
            at += line_end.max(1);
        }
    }
    out
}

/// IMAP literals `{N}\r\n` + N bytes sent by the server (FETCH bodies).
fn imap_literals(server: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(p) = memchr::memchr(b'{', &server[at..]) {
        let open = at + p;
        let Some(close) = server[open..].iter().take(24).position(|b| *b == b'}') else {
            at = open + 1;
            continue;
        };
        let n: Option<usize> = std::str::from_utf8(&server[open + 1..open + close])
            .ok()
            .and_then(|s| s.trim_end_matches('+').parse().ok());
        let start = open + close + 1;
        match (n, server.get(start..start + 2)) {
            (Some(n), Some(b"\r\n")) => {
                let s = start + 2;
                let e = (s + n).min(server.len());
                if n > 0 {
                    out.push(server[s..e].to_vec());
                }
                at = e;
            }
            _ => at = open + 1,
        }
    }
    out
}

/// Bodies of the HTTP messages in one direction of a stream.
fn http_bodies(stream: &[u8], requests: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let rest = &stream[at..];
        let parsed = if requests {
            let mut req = httparse::Request::new(&mut headers);
            req.parse(rest).ok().and_then(|s| match s {
                httparse::Status::Complete(n) => Some((n, None)),
                httparse::Status::Partial => None,
            })
        } else {
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(rest) {
                Ok(httparse::Status::Complete(n)) => Some((n, resp.code)),
                _ => None,
            }
        };
        let Some((head_len, code)) = parsed else { break };
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        let lower = |name: &str| get(name).map(|v| v.to_ascii_lowercase());
        let body_start = at + head_len;
        let chunked = lower("transfer-encoding").is_some_and(|t| t.contains("chunked"));
        let length: Option<usize> = get("content-length").and_then(|l| l.parse().ok());
        let no_body = code.is_some_and(|c| c == 204 || c == 304 || (100..200).contains(&c));
        let (body, next) = if no_body {
            (Vec::new(), body_start)
        } else if chunked {
            dechunk(&stream[body_start..]).map_or((Vec::new(), stream.len()), |(b, n)| (b, body_start + n))
        } else if let Some(n) = length {
            let end = body_start.saturating_add(n).min(stream.len());
            (stream[body_start..end].to_vec(), end)
        } else if requests {
            (Vec::new(), body_start)
        } else {
            (stream[body_start..].to_vec(), stream.len())
        };
        let body = match lower("content-encoding").as_deref() {
            Some("deflate") => inflate_any(&body),
            _ => body,
        };
        if !body.is_empty() {
            match get("content-type") {
                Some(ct) if ct.to_ascii_lowercase().starts_with("multipart/") => {
                    let mut msg = format!("Content-Type: {ct}\r\n\r\n").into_bytes();
                    msg.extend_from_slice(&body);
                    let (parts, _) = mime::parts(&msg, 1000);
                    out.extend(parts.into_iter().map(|p| p.body).filter(|b| !b.is_empty()));
                }
                _ => out.push(body),
            }
        }
        if next <= at {
            break;
        }
        at = next;
    }
    out
}

fn dechunk(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + memchr::memchr(b'\n', &data[at..])?;
        let size_text = String::from_utf8_lossy(&data[at..line_end]);
        let size_text = size_text.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).ok()?;
        at = line_end + 1;
        if size == 0 {
            // trailers up to the empty line
            let end = memchr::memmem::find(&data[at..], b"\r\n").map_or(data.len(), |p| at + p + 2);
            return Some((out, end));
        }
        let end = (at + size).min(data.len());
        out.extend_from_slice(&data[at..end]);
        at = end + 2;
        if at >= data.len() {
            return Some((out, data.len()));
        }
    }
}

/// `deflate` bodies: zlib-wrapped, or raw as some servers send them.
fn inflate_any(body: &[u8]) -> Vec<u8> {
    let cap = 64 << 20;
    let (out, _, damaged) = super::zip::read_bounded(flate2::read::ZlibDecoder::new(body), cap);
    if !damaged || !out.is_empty() {
        return out;
    }
    super::zip::read_bounded(flate2::read::DeflateDecoder::new(body), cap).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_wire_protocol_objects() {
        assert_eq!(
            pasv("227 Entering Passive Mode (203,0,113,10,195,80)"),
            Some(("203.0.113.10".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 195 * 256 + 80))
        );
        assert_eq!(pasv("10,0,0,1,4,1").map(|e| e.1), Some(1025));
        assert_eq!(epsv("229 Entering Extended Passive Mode (|||6446|)"), Some(6446));
        assert_eq!(eprt("|1|10.0.0.2|6000|").map(|e| e.1), Some(6000));
        let smtp = b"EHLO a\r\nMAIL FROM:<a>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n";
        assert_eq!(smtp_messages(smtp), vec![b"Subject: x\r\n\r\n.dot\r\nbody\r\n".to_vec()]);
        let req = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n";
        assert_eq!(http_bodies(req, true), vec![b"abc".to_vec(), b"def".to_vec()]);
        // SMB2: a WRITE of "abc" at offset 2, then garbage and every
        // truncation and a compound offset pointing inside the header
        let mut w = vec![0u8; 64];
        w[..4].copy_from_slice(b"\xFESMB");
        w[12] = 9;
        let mut body = vec![0u8; 48];
        body[2] = 112;
        body[4] = 3;
        body[8] = 2;
        w.extend_from_slice(&body);
        w.extend_from_slice(b"abc");
        let mut frame = vec![0, 0, 0, w.len() as u8];
        frame.extend_from_slice(&w);
        assert_eq!(smb2_files(&frame, &[]), vec![(Dir::ToServer, b"\0\0abc".to_vec())]);
        for cut in 0..frame.len() {
            let _ = smb2_files(&frame[..cut], &frame[..cut]);
        }
        let mut bad = frame.clone();
        bad[4 + 20] = 8; // NextCommand inside the header
        let _ = smb2_files(&bad, &bad);
        let imap = b"* 1 FETCH (BODY[] {5}\r\nhello)\r\na OK\r\n";
        assert_eq!(imap_literals(imap), vec![b"hello".to_vec()]);
    }
}
