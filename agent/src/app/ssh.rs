//! SSH version banners (`SSH-2.0-OpenSSH_8.9p1 Ubuntu-3\r\n`), both sides,
//! and the first binary packet after them: the `SSH_MSG_KEXINIT` whose
//! algorithm lists make the HASSH fingerprints (Salesforce's HASSH, as
//! Suricata's `ssh.hassh*` keywords and EVE fields compute them).

use md5::{Digest as _, Md5};

const MAX_BANNER: usize = 255;
/// Largest KEXINIT packet accepted (RFC 4253 asks for 35,000 at least).
const MAX_KEX_PACKET: usize = 35_000;
const SSH_MSG_KEXINIT: u8 = 20;

/// A HASSH fingerprint: the MD5 of `string`, which joins the key exchange,
/// encryption, MAC and compression lists of one side with `;`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hassh {
    pub hash: String,
    pub string: String,
}

/// What one call of [`SshState::on_data`] completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub banner: bool,
    pub kex: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Banner {
    pub proto_version: String,
    pub software: String,
}

/// What the server's packets say about the authentication, after the key
/// exchange, by their sizes alone (the content is encrypted). Zeek's SSH
/// analyzer's inference: the first encrypted server packet is
/// `SSH_MSG_SERVICE_ACCEPT` (fixed content, 17 bytes); the next ones are
/// `SSH_MSG_USERAUTH_FAILURE`s (all of one size, the method list) until an
/// `SSH_MSG_USERAUTH_SUCCESS` (1 byte of content), which with every cipher
/// and MAC mode of SSH 2 is exactly 16 bytes shorter on the wire than the
/// service accept. One TCP segment is taken as one packet, as Zeek does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuthGuess {
    /// The server sent `SSH_MSG_NEWKEYS`: what follows is encrypted.
    pub encrypted: bool,
    service_accept: Option<usize>,
    failure_size: Option<usize>,
    /// Failure-sized packets after the first one (the first answers the
    /// client's `none` query): failed authentication attempts.
    pub failures: u32,
    /// A packet of the size of `SSH_MSG_USERAUTH_SUCCESS` was seen.
    pub success: bool,
    /// The plaintext packets could not be followed (not SSH 2, oversized).
    gave_up: bool,
    plain: Vec<u8>,
}

const SSH_MSG_NEWKEYS: u8 = 21;

impl AuthGuess {
    /// One chunk of in-order server bytes after its banner line.
    fn server_chunk(&mut self, chunk: &[u8]) {
        if self.gave_up || chunk.is_empty() {
            return;
        }
        if self.encrypted {
            self.encrypted_packet(chunk.len());
            return;
        }
        match walk_kex(&mut self.plain, chunk) {
            KexWalk::More => {}
            KexWalk::Broken => self.gave_up = true,
            // the rest of this segment (EXT_INFO) is not a packet of ours
            KexWalk::NewKeys => self.encrypted = true,
        }
    }

    fn encrypted_packet(&mut self, len: usize) {
        let Some(accept) = self.service_accept else {
            // larger: SSH_MSG_EXT_INFO or a banner before the service accept
            if len <= 100 {
                self.service_accept = Some(len);
            }
            return;
        };
        if self.success {
            return;
        }
        if len + 16 == accept {
            self.success = true;
            return;
        }
        match self.failure_size {
            // larger: a pre-authentication banner
            None if len <= 150 => self.failure_size = Some(len),
            Some(f) if f == len => self.failures += 1,
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
pub struct SshState {
    /// The authentication outcome as the server's packet sizes show it.
    pub auth: AuthGuess,
    buf: [Vec<u8>; 2],
    pub banners: [Option<Banner>; 2],
    /// HASSH of the client (0) and the server (1) KEXINIT.
    pub hassh: [Option<Hassh>; 2],
    pub logged: bool,
    done: [bool; 2],
    /// The KEXINIT of this side was parsed, or will not be.
    kex_done: [bool; 2],
    pub parse_errors: u64,
    /// The client's plaintext packets, followed up to its `SSH_MSG_NEWKEYS`
    /// (the server's are followed by `auth`).
    client: ClientPackets,
}

/// The client's plaintext binary packets, up to `SSH_MSG_NEWKEYS`.
#[derive(Debug, Default)]
struct ClientPackets {
    plain: Vec<u8>,
    newkeys: bool,
    gave_up: bool,
}

impl ClientPackets {
    fn chunk(&mut self, chunk: &[u8]) {
        if self.newkeys || self.gave_up || chunk.is_empty() {
            return;
        }
        match walk_kex(&mut self.plain, chunk) {
            KexWalk::More => {}
            KexWalk::Broken => self.gave_up = true,
            KexWalk::NewKeys => self.newkeys = true,
        }
    }
}

/// How far one side's cleartext binary packets have got.
enum KexWalk {
    /// Still in the key exchange (or a packet is incomplete).
    More,
    /// A length no key-exchange packet has: not SSH as we know it.
    Broken,
    /// NEWKEYS seen: what follows is encrypted.
    NewKeys,
}

/// Appends `chunk` to a side's cleartext bytes and walks its binary packets
/// until NEWKEYS; the buffer is released once the walk ends either way.
fn walk_kex(plain: &mut Vec<u8>, chunk: &[u8]) -> KexWalk {
    plain.extend_from_slice(chunk);
    loop {
        let Some(len) = plain.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            return KexWalk::More;
        };
        if !(5..=MAX_KEX_PACKET).contains(&len) {
            *plain = Vec::new();
            return KexWalk::Broken;
        }
        let Some(&msg) = plain.get(5) else { return KexWalk::More };
        if plain.len() < 4 + len {
            return KexWalk::More;
        }
        plain.drain(..4 + len);
        if msg == SSH_MSG_NEWKEYS {
            *plain = Vec::new();
            return KexWalk::NewKeys;
        }
    }
}

pub fn probe(data: &[u8]) -> bool {
    data.starts_with(b"SSH-")
}

/// Parses one banner line (without the line end).
pub fn parse_banner(line: &[u8]) -> Option<Banner> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("SSH-")?;
    let (proto, software) = rest.split_once('-')?;
    if proto.is_empty() || !proto.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    // Comments after a space are not part of the software version.
    let software = software.split(' ').next().unwrap_or("");
    Some(Banner { proto_version: proto.to_string(), software: software.to_string() })
}

impl SshState {
    /// Feeds in-order bytes of direction `dir` (0 from the client).
    pub fn on_data(&mut self, dir: usize, data: &[u8]) -> Progress {
        let mut progress = Progress::default();
        let mut data = data;
        let mut banner_rest: Option<Vec<u8>> = None;
        if !self.done[dir] {
            let buf = &mut self.buf[dir];
            let take = data.len().min(MAX_BANNER + 2 - buf.len().min(MAX_BANNER + 2));
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            // servers may send other lines before the banner (RFC 4253 4.2)
            while let Some(eol) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=eol).collect();
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.starts_with(b"SSH-") {
                    self.done[dir] = true;
                    match parse_banner(line) {
                        Some(b) => {
                            self.banners[dir] = Some(b);
                            progress.banner = true;
                        }
                        None => {
                            self.parse_errors += 1;
                            self.kex_done[dir] = true;
                        }
                    }
                    break;
                }
            }
            if !self.done[dir] {
                if buf.len() > MAX_BANNER {
                    self.done[dir] = true;
                    self.kex_done[dir] = true;
                    self.parse_errors += 1;
                    buf.clear();
                }
                return progress;
            }
            // what followed the banner line is the start of the binary protocol
            banner_rest = Some(self.buf[dir].clone());
        }
        if self.banners[dir].is_some() {
            let mut chunk = |c: &[u8]| {
                if dir == 1 { self.auth.server_chunk(c) } else { self.client.chunk(c) }
            };
            match banner_rest {
                Some(mut rest) => {
                    rest.extend_from_slice(data);
                    chunk(&rest);
                }
                None => chunk(data),
            }
        }
        if self.kex_done[dir] {
            self.buf[dir] = Vec::new();
            return progress;
        }
        let buf = &mut self.buf[dir];
        buf.extend_from_slice(&data[..data.len().min((MAX_KEX_PACKET + 4).saturating_sub(buf.len()))]);
        match kexinit(buf, dir) {
            Kex::More => {}
            Kex::Done(h) => {
                self.kex_done[dir] = true;
                self.hassh[dir] = h;
                progress.kex = self.hassh[dir].is_some();
                self.buf[dir] = Vec::new();
            }
        }
        progress
    }

    pub fn both(&self) -> bool {
        self.banners[0].is_some() && self.banners[1].is_some()
    }

    /// Both sides sent `SSH_MSG_NEWKEYS`: what follows is encrypted, and
    /// Suricata's default `encryption-handling: track-only` inspects the
    /// flow no further (its SSH parser sets `APP_LAYER_PARSER_NO_INSPECTION`
    /// at the second NEWKEYS).
    pub fn encrypted(&self) -> bool {
        self.auth.encrypted && self.client.newkeys
    }

    /// Both banners and both key exchange offers are in (or will not come).
    pub fn complete(&self) -> bool {
        self.both() && self.kex_done[0] && self.kex_done[1]
    }
}

enum Kex {
    More,
    /// The first packet is complete: its HASSH when it is a KEXINIT.
    Done(Option<Hassh>),
}

/// The first binary packet in `buf`: `uint32 length, byte padding, payload`.
fn kexinit(buf: &[u8], dir: usize) -> Kex {
    let Some(len) = buf.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
        return Kex::More;
    };
    if !(6..=MAX_KEX_PACKET).contains(&len) {
        return Kex::Done(None);
    }
    let Some(packet) = buf.get(4..4 + len) else { return Kex::More };
    let pad = usize::from(packet[0]);
    let Some(payload) = packet.get(1..len.saturating_sub(pad)) else { return Kex::Done(None) };
    if payload.first() != Some(&SSH_MSG_KEXINIT) {
        return Kex::Done(None);
    }
    // msg byte, 16-byte cookie, then the name-lists
    let mut at = 17;
    let mut lists: Vec<&[u8]> = Vec::with_capacity(8);
    while lists.len() < 8 {
        let Some(n) = payload.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        else {
            return Kex::Done(None);
        };
        let Some(list) = payload.get(at + 4..at + 4 + n) else { return Kex::Done(None) };
        lists.push(list);
        at += 4 + n;
    }
    // kex, host key, enc c2s, enc s2c, mac c2s, mac s2c, comp c2s, comp s2c
    let pick = if dir == 0 { [0, 2, 4, 6] } else { [0, 3, 5, 7] };
    let string = pick.iter().map(|&i| String::from_utf8_lossy(lists[i])).collect::<Vec<_>>().join(";");
    let hash = Md5::digest(string.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    Kex::Done(Some(Hassh { hash, string }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        let b = parse_banner(b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.1").unwrap();
        assert_eq!((b.proto_version.as_str(), b.software.as_str()), ("2.0", "OpenSSH_8.9p1"));
        assert_eq!(parse_banner(b"SSH-1.99-Cisco-1.25").unwrap().software, "Cisco-1.25");
        assert!(parse_banner(b"HTTP/1.1 200").is_none());
        let mut s = SshState::default();
        assert!(!s.on_data(1, b"hello there\r\nSSH-2.0-").banner);
        assert!(s.on_data(1, b"dropbear_2019.78\r\n\x00\x00").banner);
        assert_eq!(s.banners[1].as_ref().unwrap().software, "dropbear_2019.78");
        let mut s = SshState::default();
        s.on_data(0, &[b'x'; 600]);
        assert_eq!(s.parse_errors, 1);
        assert!(!s.on_data(0, b"SSH-2.0-x\r\n").banner);
    }

    /// A KEXINIT with the given lists, as a binary packet.
    fn kex_packet(lists: [&str; 10]) -> Vec<u8> {
        let mut payload = vec![SSH_MSG_KEXINIT];
        payload.extend_from_slice(&[7; 16]);
        for l in lists {
            payload.extend_from_slice(&(l.len() as u32).to_be_bytes());
            payload.extend_from_slice(l.as_bytes());
        }
        payload.extend_from_slice(&[0, 0, 0, 0, 0]);
        let pad = 8 - (payload.len() + 5) % 8 + 4;
        let mut p = ((payload.len() + pad + 1) as u32).to_be_bytes().to_vec();
        p.push(pad as u8);
        p.extend_from_slice(&payload);
        p.extend(std::iter::repeat_n(0, pad));
        p
    }

    #[test]
    fn hassh_of_both_sides_across_segments() {
        let lists = [
            "curve25519-sha256,diffie-hellman-group14-sha256",
            "ssh-ed25519",
            "aes128-ctr,aes256-ctr",
            "aes256-gcm@openssh.com",
            "hmac-sha2-256",
            "hmac-sha2-512",
            "none,zlib@openssh.com",
            "none",
            "",
            "",
        ];
        let pkt = kex_packet(lists);
        let mut s = SshState::default();
        // banner and the start of the KEXINIT in one segment, the rest later
        let first = [b"SSH-2.0-OpenSSH_9.6\r\n".as_slice(), &pkt[..30]].concat();
        let p = s.on_data(0, &first);
        assert!(p.banner && !p.kex);
        assert!(s.on_data(0, &pkt[30..]).kex);
        let c = s.hassh[0].as_ref().unwrap();
        assert_eq!(
            c.string,
            "curve25519-sha256,diffie-hellman-group14-sha256;aes128-ctr,aes256-ctr;hmac-sha2-256;none,zlib@openssh.com"
        );
        assert_eq!(c.hash, format!("{:x}", Md5::digest(c.string.as_bytes())));
        assert!(!s.complete());
        let p = s.on_data(1, &[b"SSH-2.0-srv\r\n".as_slice(), &pkt].concat());
        assert!(p.banner && p.kex);
        assert_eq!(
            s.hassh[1].as_ref().unwrap().string,
            "curve25519-sha256,diffie-hellman-group14-sha256;aes256-gcm@openssh.com;hmac-sha2-512;none"
        );
        assert!(s.complete());
        // a first packet that is not a KEXINIT, or garbage: no fingerprint
        let mut s = SshState::default();
        s.on_data(0, b"SSH-2.0-x\r\n\x00\x00\x00\x0c\x0a\x15aaaaaaaaaaaaaaaa");
        s.on_data(1, b"SSH-2.0-y\r\n\xff\xff\xff\xff");
        assert!(s.complete() && s.hassh == [None, None]);
        // truncated name-lists
        let mut bad = pkt.clone();
        bad[23] = 0x7f; // the first name-list's length
        let mut s = SshState::default();
        s.on_data(0, &[b"SSH-2.0-x\r\n".as_slice(), &bad].concat());
        assert!(s.hassh[0].is_none());
    }

    /// A plaintext binary packet with message type `msg` and `n` payload bytes.
    fn plain(msg: u8, n: usize) -> Vec<u8> {
        let len = 1 + 1 + n + 4;
        let mut v = (len as u32).to_be_bytes().to_vec();
        v.push(4);
        v.push(msg);
        v.extend(std::iter::repeat_n(0u8, n + 4));
        v
    }

    /// Server segments of real OpenSSH 9.2 sessions (chacha20-poly1305):
    /// after NEWKEYS 44 (service accept), 52 (failure: methods), then 28
    /// (success) for a login, 52 again for a wrong password.
    #[test]
    fn authentication_outcome_from_server_packet_sizes() {
        let kex = [plain(20, 300), plain(31, 200), plain(21, 0)].concat();
        let session = |segments: &[usize], ext_info_alone: bool| {
            let mut s = SshState::default();
            s.on_data(1, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
            // KEXINIT, KEXDH_REPLY and NEWKEYS, then EXT_INFO in the same segment
            s.on_data(1, &[kex.clone(), vec![7u8; if ext_info_alone { 0 } else { 260 }]].concat());
            if ext_info_alone {
                s.on_data(1, &[7u8; 260]);
            }
            for n in segments {
                s.on_data(1, &vec![9u8; *n]);
            }
            s.auth
        };
        let ok = session(&[44, 52, 28, 116, 44, 72, 100], false);
        assert!(ok.encrypted && ok.success && ok.failures == 0, "{ok:?}");
        let bad = session(&[44, 52, 52], false);
        assert!(bad.encrypted && !bad.success && bad.failures == 1, "{bad:?}");
        let three = session(&[44, 52, 52, 52, 52], true);
        assert!(!three.success && three.failures == 3, "{three:?}");
        // AES-GCM sizes: accept 52, success 36; a banner before the failure is skipped
        let gcm = session(&[52, 400, 68, 36], false);
        assert!(gcm.success, "{gcm:?}");
        // the plaintext part is followed across segment boundaries
        let mut s = SshState::default();
        s.on_data(1, b"SSH-2.0-x\r\n");
        for b in kex.chunks(7) {
            s.on_data(1, b);
        }
        assert!(s.auth.encrypted);
        // encrypted for the rule engine once both sides sent NEWKEYS
        let mut s = SshState::default();
        s.on_data(0, b"SSH-2.0-client\r\n");
        s.on_data(1, b"SSH-2.0-server\r\n");
        s.on_data(1, &kex);
        assert!(s.auth.encrypted && !s.encrypted());
        let client = [plain(20, 100), plain(30, 40)].concat();
        s.on_data(0, &client);
        assert!(!s.encrypted());
        for b in plain(21, 0).chunks(3) {
            s.on_data(0, b);
        }
        assert!(s.encrypted());
        // not SSH 2 binary packets: no guess, no panic
        let mut s = SshState::default();
        s.on_data(1, b"SSH-1.5-old\r\n\xff\xff\xff\xff garbage");
        s.on_data(1, &[1u8; 28]);
        assert!(!s.auth.encrypted && !s.auth.success);
    }
}
