//! SSH version banners (`SSH-2.0-OpenSSH_8.9p1 Ubuntu-3\r\n`), both sides.

const MAX_BANNER: usize = 255;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Banner {
    pub proto_version: String,
    pub software: String,
}

#[derive(Debug, Default)]
pub struct SshState {
    buf: [Vec<u8>; 2],
    pub banners: [Option<Banner>; 2],
    pub logged: bool,
    done: [bool; 2],
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
    /// Feeds in-order bytes; returns true when a banner was completed.
    pub fn on_data(&mut self, dir: usize, data: &[u8]) -> bool {
        if self.done[dir] {
            return false;
        }
        let buf = &mut self.buf[dir];
        buf.extend_from_slice(&data[..data.len().min(MAX_BANNER + 2)]);
        // servers may send other lines before the banner (RFC 4253 4.2)
        while let Some(eol) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=eol).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b"SSH-") {
                self.done[dir] = true;
                buf.clear();
                match parse_banner(line) {
                    Some(b) => {
                        self.banners[dir] = Some(b);
                        return true;
                    }
                    None => {
                        self.parse_errors += 1;
                        return false;
                    }
                }
            }
        }
        if buf.len() > MAX_BANNER {
            self.done[dir] = true;
            self.parse_errors += 1;
            buf.clear();
        }
        false
    }

    pub fn both(&self) -> bool {
        self.banners[0].is_some() && self.banners[1].is_some()
    }
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
        assert!(!s.on_data(1, b"hello there\r\nSSH-2.0-"));
        assert!(s.on_data(1, b"dropbear_2019.78\r\n\x00\x00"));
        assert_eq!(s.banners[1].as_ref().unwrap().software, "dropbear_2019.78");
        let mut s = SshState::default();
        s.on_data(0, &[b'x'; 600]);
        assert_eq!(s.parse_errors, 1);
    }
}
