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

#[derive(Debug, Default)]
pub struct SshState {
    buf: [Vec<u8>; 2],
    pub banners: [Option<Banner>; 2],
    /// HASSH of the client (0) and the server (1) KEXINIT.
    pub hassh: [Option<Hassh>; 2],
    pub logged: bool,
    done: [bool; 2],
    /// The KEXINIT of this side was parsed, or will not be.
    kex_done: [bool; 2],
    pub parse_errors: u64,
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
}
