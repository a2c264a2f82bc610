//! TLS handshake inspection: ClientHello (SNI, ALPN, JA3, JA4), ServerHello
//! (version, cipher, JA3S) and, where visible (TLS 1.2 and older), the
//! server certificate (subject, issuer, serial, SHA-1 fingerprint, validity,
//! subject alternative names).
//!
//! Records are reassembled from the in-order stream and handshake messages
//! from records (a certificate chain often spans several records); record
//! and handshake framing and the hello bodies are parsed with `tls-parser`,
//! the extension list is walked as raw TLVs so that fingerprints keep every
//! extension in order even when one of them is malformed. Once a direction
//! turns encrypted it is no longer parsed. Buffers are bounded.

use std::fmt::Write as _;

use md5::{Digest as _, Md5};
use sha2::Sha256;
use tls_parser::{TlsMessage, TlsMessageHandshake, parse_tls_message_handshake};

const MAX_RECORD_BUFFER: usize = 64 * 1024;
const MAX_HANDSHAKE: usize = 256 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub version: u16,
    pub sni: Option<String>,
    pub ciphers: Vec<u16>,
    pub extensions: Vec<u16>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    pub sig_algs: Vec<u16>,
    pub alpn: Vec<String>,
    pub supported_versions: Vec<u16>,
    pub ja3_string: String,
    pub ja3_hash: String,
    pub ja4: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// Negotiated version (from supported_versions when present).
    pub version: u16,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    pub ja3s_string: String,
    pub ja3s_hash: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    /// SHA-1 of the DER certificate, lower-case hex with `:` (Suricata).
    pub fingerprint: String,
    pub not_before: String,
    pub not_after: String,
    pub sans: Vec<String>,
    pub chain_len: usize,
}

/// What one call to [`TlsState::on_data`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsEvent {
    ClientHello,
    ServerHello,
    Certificate,
}

#[derive(Debug, Default)]
struct Direction {
    records: Vec<u8>,
    handshake: Vec<u8>,
    encrypted: bool,
    failed: bool,
    /// Once encrypted, record headers are still followed (nothing is
    /// buffered): the bytes left of the current record, and the header
    /// bytes read so far.
    skip: usize,
    hdr: [u8; 5],
    hdr_len: usize,
}

impl Direction {
    /// Follows the record headers of encrypted data; true when an
    /// application data record starts in `data`.
    fn walk(&mut self, data: &[u8]) -> bool {
        let mut seen = false;
        let mut rest = data;
        while !rest.is_empty() && !self.failed {
            if self.skip > 0 {
                let n = self.skip.min(rest.len());
                self.skip -= n;
                rest = &rest[n..];
                continue;
            }
            if let Some(h) = self.hdr.get_mut(self.hdr_len) {
                *h = rest[0];
            }
            self.hdr_len += 1;
            rest = &rest[1..];
            if self.hdr_len == 5 {
                self.hdr_len = 0;
                if self.hdr[1] != 0x03 {
                    self.failed = true;
                }
                seen |= self.hdr[0] == 23;
                self.skip = usize::from(u16::from_be_bytes([self.hdr[3], self.hdr[4]]));
            }
        }
        seen
    }
}

#[derive(Debug, Default)]
pub struct TlsState {
    dirs: [Direction; 2],
    pub client_hello: Option<ClientHello>,
    pub server_hello: Option<ServerHello>,
    pub cert: Option<CertInfo>,
    pub logged: bool,
    pub parse_errors: u64,
    /// An application data record was seen (from the server, or from the
    /// client once the ServerHello is in: earlier client data may be TLS
    /// 1.3 early data): from then on Suricata's default
    /// `encryption-handling: track-only` no longer inspects the flow's
    /// payload (its TLS parser sets `APP_LAYER_PARSER_NO_INSPECTION_PAYLOAD`
    /// there). The handshake is still parsed.
    pub app_data: bool,
}

pub fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0200 => "SSLv2",
        0x0300 => "SSLv3",
        0x0301 => "TLSv1", // Suricata's name for TLS 1.0
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        _ => "UNDETERMINED",
    }
}

/// Looks like the start of a TLS handshake record.
pub fn probe(data: &[u8]) -> bool {
    data.len() >= 3 && data[0] == 0x16 && data[1] == 0x03 && data[2] <= 0x04
}

impl TlsState {
    /// Feeds in-order stream bytes of direction `dir` (0: client to server).
    pub fn on_data(&mut self, dir: usize, data: &[u8], events: &mut Vec<TlsEvent>) {
        let d = &mut self.dirs[dir];
        if d.failed || data.is_empty() {
            return;
        }
        if d.encrypted {
            if !self.app_data {
                let seen = d.walk(data);
                self.application_data(dir, seen);
            }
            return;
        }
        d.records.extend_from_slice(data);
        if d.records.len() > MAX_RECORD_BUFFER {
            d.failed = true;
            self.parse_errors += 1;
            return;
        }
        loop {
            let d = &mut self.dirs[dir];
            if d.records.len() < 5 {
                return;
            }
            let content_type = d.records[0];
            let len = usize::from(u16::from_be_bytes([d.records[3], d.records[4]]));
            if d.records[1] != 0x03 || len > 18 * 1024 {
                d.failed = true;
                self.parse_errors += 1;
                return;
            }
            if d.records.len() < 5 + len {
                return;
            }
            let body: Vec<u8> = d.records[5..5 + len].to_vec();
            d.records.drain(..5 + len);
            match content_type {
                20 => {
                    // ChangeCipherSpec: what follows in this direction is encrypted.
                    d.encrypted = true;
                    let rest = std::mem::take(&mut d.records);
                    let seen = d.walk(&rest);
                    self.application_data(dir, seen);
                    return;
                }
                22 => {
                    d.handshake.extend_from_slice(&body);
                    if d.handshake.len() > MAX_HANDSHAKE {
                        d.failed = true;
                        self.parse_errors += 1;
                        return;
                    }
                    self.handshake_messages(dir, events);
                }
                21 => {}
                _ => {
                    // application data or heartbeat: the handshake is over
                    d.encrypted = true;
                    let rest = std::mem::take(&mut d.records);
                    let seen = d.walk(&rest) || content_type == 23;
                    self.application_data(dir, seen);
                    return;
                }
            }
        }
    }

    fn application_data(&mut self, dir: usize, seen: bool) {
        if seen && (dir == 1 || self.server_hello.is_some()) {
            self.app_data = true;
        }
    }

    fn handshake_messages(&mut self, dir: usize, events: &mut Vec<TlsEvent>) {
        loop {
            let hs = &self.dirs[dir].handshake;
            if hs.len() < 4 {
                return;
            }
            let len = (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
            if hs.len() < 4 + len {
                return;
            }
            let msg: Vec<u8> = self.dirs[dir].handshake.drain(..4 + len).collect();
            match parse_tls_message_handshake(&msg) {
                Ok((_, TlsMessage::Handshake(h))) => self.handshake(dir, &msg, h, events),
                _ => self.parse_errors += 1,
            }
            if self.dirs[dir].encrypted {
                return;
            }
        }
    }

    fn handshake(&mut self, dir: usize, raw: &[u8], h: TlsMessageHandshake<'_>, events: &mut Vec<TlsEvent>) {
        match h {
            TlsMessageHandshake::ClientHello(ch) if dir == 0 => {
                let mut hello = ClientHello {
                    version: ch.version.0,
                    ciphers: ch.ciphers.iter().map(|c| c.0).collect(),
                    ..Default::default()
                };
                if let Some(ext) = ch.ext {
                    client_extensions(ext, &mut hello);
                }
                fingerprint_client(&mut hello);
                self.client_hello = Some(hello);
                events.push(TlsEvent::ClientHello);
            }
            TlsMessageHandshake::ServerHello(sh) if dir == 1 => {
                let mut hello =
                    ServerHello { version: sh.version.0, cipher: sh.cipher.0, ..Default::default() };
                if let Some(ext) = sh.ext {
                    for (t, data) in extensions(ext) {
                        hello.extensions.push(t);
                        if t == 43 && data.len() == 2 {
                            hello.version = u16::from_be_bytes([data[0], data[1]]);
                        }
                    }
                }
                let exts: Vec<String> = hello.extensions.iter().map(u16::to_string).collect();
                hello.ja3s_string = format!("{},{},{}", sh.version.0, hello.cipher, exts.join("-"));
                hello.ja3s_hash = hex_md5(&hello.ja3s_string);
                if hello.version == 0x0304 {
                    // TLS 1.3: everything after the ServerHello is encrypted.
                    self.dirs[1].encrypted = true;
                }
                self.server_hello = Some(hello);
                events.push(TlsEvent::ServerHello);
            }
            TlsMessageHandshake::Certificate(c) if dir == 1 && self.cert.is_none() => {
                if let Some(first) = c.cert_chain.first()
                    && let Some(mut info) = cert_info(first.data)
                {
                    info.chain_len = c.cert_chain.len();
                    self.cert = Some(info);
                    events.push(TlsEvent::Certificate);
                }
            }
            _ => {
                let _ = raw;
            }
        }
    }
}

/// Walks a raw extension block: (type, data) in order; stops at damage.
fn extensions(mut ext: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while ext.len() >= 4 {
        let t = u16::from_be_bytes([ext[0], ext[1]]);
        let len = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        let Some(data) = ext.get(4..4 + len) else { break };
        out.push((t, data));
        ext = &ext[4 + len..];
    }
    out
}

fn u16_list(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

fn client_extensions(ext: &[u8], hello: &mut ClientHello) {
    for (t, data) in extensions(ext) {
        hello.extensions.push(t);
        match t {
            // server_name list: len(2), then type(1) len(2) name
            0 if data.len() >= 5 && data[2] == 0 => {
                let n = usize::from(u16::from_be_bytes([data[3], data[4]]));
                if let Some(name) = data.get(5..5 + n) {
                    hello.sni = Some(String::from_utf8_lossy(name).into_owned());
                }
            }
            10 if data.len() >= 2 => hello.groups = u16_list(&data[2..]),
            11 if !data.is_empty() => hello.point_formats = data[1..].to_vec(),
            13 if data.len() >= 2 => hello.sig_algs = u16_list(&data[2..]),
            16 if data.len() >= 2 => {
                let mut rest = &data[2..];
                while let Some((&n, tail)) = rest.split_first() {
                    let Some(proto) = tail.get(..usize::from(n)) else { break };
                    hello.alpn.push(String::from_utf8_lossy(proto).into_owned());
                    rest = &tail[usize::from(n)..];
                }
            }
            43 if !data.is_empty() => hello.supported_versions = u16_list(&data[1..]),
            _ => {}
        }
    }
}

fn hex_md5(s: &str) -> String {
    let mut out = String::with_capacity(32);
    for b in Md5::digest(s.as_bytes()) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn sha256_12(s: &str) -> String {
    let mut out = String::with_capacity(12);
    for b in Sha256::digest(s.as_bytes()).iter().take(6) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn join<T: ToString>(v: impl Iterator<Item = T>, sep: &str) -> String {
    v.map(|x| x.to_string()).collect::<Vec<_>>().join(sep)
}

/// JA3 (Salesforce) and JA4 (FoxIO, TLS over TCP) of a ClientHello.
fn fingerprint_client(h: &mut ClientHello) {
    let ciphers = h.ciphers.iter().copied().filter(|c| !is_grease(*c));
    let exts = h.extensions.iter().copied().filter(|e| !is_grease(*e));
    let groups = h.groups.iter().copied().filter(|g| !is_grease(*g));
    h.ja3_string = format!(
        "{},{},{},{},{}",
        h.version,
        join(ciphers.clone(), "-"),
        join(exts.clone(), "-"),
        join(groups, "-"),
        join(h.point_formats.iter(), "-")
    );
    h.ja3_hash = hex_md5(&h.ja3_string);

    let version = h.supported_versions.iter().copied().filter(|v| !is_grease(*v)).max().unwrap_or(h.version);
    let v = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0200 => "s2",
        _ => "00",
    };
    let sni = if h.sni.is_some() { 'd' } else { 'i' };
    let n_ciphers = ciphers.clone().count().min(99);
    let n_exts = exts.clone().count().min(99);
    let alpn = match h.alpn.first() {
        Some(a) if !a.is_empty() => {
            let (f, l) = (a.chars().next().unwrap_or('0'), a.chars().last().unwrap_or('0'));
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                format!("{f}{l}")
            } else {
                let hex: String = a.bytes().map(|b| format!("{b:02x}")).collect();
                format!("{}{}", &hex[..1], &hex[hex.len() - 1..])
            }
        }
        _ => String::from("00"),
    };
    let mut sorted_ciphers: Vec<u16> = ciphers.collect();
    sorted_ciphers.sort_unstable();
    let b = if sorted_ciphers.is_empty() {
        String::from("000000000000")
    } else {
        sha256_12(&join(sorted_ciphers.iter().map(|c| format!("{c:04x}")), ","))
    };
    let mut sorted_exts: Vec<u16> = exts.filter(|e| *e != 0 && *e != 16).collect();
    sorted_exts.sort_unstable();
    let c = if sorted_exts.is_empty() {
        String::from("000000000000")
    } else {
        let mut s = join(sorted_exts.iter().map(|e| format!("{e:04x}")), ",");
        let sigs: Vec<String> =
            h.sig_algs.iter().filter(|s| !is_grease(**s)).map(|s| format!("{s:04x}")).collect();
        if !sigs.is_empty() {
            s.push('_');
            s.push_str(&sigs.join(","));
        }
        sha256_12(&s)
    };
    h.ja4 = format!("t{v}{sni}{n_ciphers:02}{n_exts:02}{alpn}_{b}_{c}");
}

fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let sha1 = sha1_digest(der);
    let serial =
        cert.tbs_certificate.raw_serial().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    let ts = |t: &x509_parser::time::ASN1Time| {
        time::OffsetDateTime::from_unix_timestamp(t.timestamp())
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
                    .ok()
            })
            .unwrap_or_default()
    };
    let mut sans = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push((*d).to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => sans.push(format!("{ip:?}")),
                _ => {}
            }
        }
    }
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial,
        fingerprint: sha1.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
        not_before: ts(&cert.validity().not_before),
        not_after: ts(&cert.validity().not_after),
        sans,
        chain_len: 0,
    })
}

/// SHA-1 of the DER certificate: the fingerprint SOC tools and threat
/// feeds key on (not used for any security decision here).
fn sha1_digest(data: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS 1.2 ClientHello record with SNI `example.com`, ALPN h2, one
    /// GREASE cipher and a GREASE extension.
    fn client_hello() -> Vec<u8> {
        let mut ext = Vec::new();
        let mut push = |t: u16, data: &[u8]| {
            ext.extend_from_slice(&t.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        };
        push(0x0a0a, &[]);
        let name = b"example.com";
        let mut sni = vec![0, (name.len() + 3) as u8, 0, 0, name.len() as u8];
        sni.extend_from_slice(name);
        push(0, &sni);
        push(10, &[0, 4, 0, 0x1d, 0, 0x17]);
        push(11, &[1, 0]);
        push(13, &[0, 4, 0x04, 0x03, 0x08, 0x04]);
        push(16, &[0, 3, 2, b'h', b'2']);
        push(43, &[4, 0x03, 0x04, 0x03, 0x03]);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 6, 0x2a, 0x2a, 0x13, 0x01, 0xc0, 0x2f]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0, 0, 0];
        hs[1..4].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn client_hello_sni_ja3_ja4_across_segments() {
        let rec = client_hello();
        let mut s = TlsState::default();
        let mut ev = Vec::new();
        for chunk in rec.chunks(7) {
            s.on_data(0, chunk, &mut ev);
        }
        assert_eq!(ev, vec![TlsEvent::ClientHello]);
        let h = s.client_hello.unwrap();
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert_eq!(h.alpn, vec!["h2"]);
        // GREASE values are left out of JA3
        assert_eq!(h.ja3_string, "771,4865-49199,0-10-11-13-16-43,29-23,0");
        assert_eq!(h.ja3_hash.len(), 32);
        assert!(h.ja4.starts_with("t13d0206h2_"), "{}", h.ja4);
        assert_eq!(h.ja4.len(), "t13d0206h2_".len() + 12 + 1 + 12);
    }

    #[test]
    fn application_data_is_seen_behind_the_change_cipher_spec() {
        let rec = |t: u8, n: usize| {
            let mut r = vec![t, 3, 3];
            r.extend_from_slice(&(n as u16).to_be_bytes());
            r.extend(std::iter::repeat_n(0x17u8, n));
            r
        };
        // ChangeCipherSpec, an encrypted Finished (whose bytes look like
        // record types), then application data, fed in small pieces
        let server = [rec(20, 1), rec(22, 40), rec(23, 300)].concat();
        let mut s = TlsState::default();
        let split = server.len() - 300 - 5;
        for chunk in server[..split].chunks(3) {
            s.on_data(1, chunk, &mut Vec::new());
        }
        assert!(!s.app_data, "the handshake is not application data");
        s.on_data(1, &server[split..split + 2], &mut Vec::new());
        assert!(!s.app_data);
        s.on_data(1, &server[split + 2..], &mut Vec::new());
        assert!(s.app_data);
        // the client's application data before any ServerHello (early
        // data) does not count, and the server's handshake is still parsed
        // after it
        let mut s = TlsState::default();
        s.on_data(0, &[client_hello(), rec(23, 10)].concat(), &mut Vec::new());
        assert!(!s.app_data);
        s.on_data(0, &[rec(21, 2), rec(23, 10)].concat(), &mut Vec::new());
        assert!(!s.app_data);
        s.on_data(1, &rec(23, 20), &mut Vec::new());
        assert!(s.app_data);
        // an alert after the ChangeCipherSpec is not application data
        let mut s = TlsState::default();
        s.on_data(1, &[rec(20, 1), rec(21, 26)].concat(), &mut Vec::new());
        assert!(!s.app_data);
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        let rec = client_hello();
        for n in 0..rec.len() {
            let mut s = TlsState::default();
            s.on_data(0, &rec[..n], &mut Vec::new());
        }
        let mut seed = 7u32;
        for _ in 0..200 {
            let mut bytes = rec.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (seed as usize) % bytes.len();
                bytes[i] = (seed >> 24) as u8;
            }
            let mut s = TlsState::default();
            s.on_data(0, &bytes, &mut Vec::new());
        }
    }

    #[test]
    fn grease() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa));
        assert!(!is_grease(0x0a0b) && !is_grease(0x1301));
    }
}
