//! Reading pcap and pcapng files (untrusted input: errors, never panics).

use std::{
    borrow::Cow,
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
    time::Duration,
};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader, blocks::interface_description::InterfaceDescriptionOption},
};

/// One captured frame.
pub struct RawPacket<'r> {
    /// Since the Unix epoch.
    pub ts: Duration,
    pub linktype: u32,
    /// Borrowed from the reader's buffer when the format allows (classic
    /// pcap): no allocation and copy per packet.
    pub data: Cow<'r, [u8]>,
}

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot open capture {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a pcap or pcapng file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: packet {index}: {reason}")]
    Packet { path: PathBuf, index: u64, reason: String },
}

enum Inner {
    Pcap(PcapReader<BufReader<File>>),
    PcapNg {
        reader: PcapNgReader<BufReader<File>>,
        /// (linktype, nanoseconds per timestamp unit or 0 for 2^-n units, n)
        interfaces: Vec<(u32, TsUnit)>,
    },
}

#[derive(Debug, Clone, Copy)]
enum TsUnit {
    Pow10(u32),
    Pow2(u32),
}

impl TsUnit {
    fn from_option(v: u8) -> TsUnit {
        if v & 0x80 != 0 { TsUnit::Pow2(u32::from(v & 0x7f)) } else { TsUnit::Pow10(u32::from(v)) }
    }

    fn to_duration(self, raw: u64) -> Duration {
        match self {
            TsUnit::Pow10(n) if n <= 9 => {
                let per_sec = 10u64.pow(n);
                Duration::new(raw / per_sec, ((raw % per_sec) * 10u64.pow(9 - n)) as u32)
            }
            TsUnit::Pow10(n) => {
                let per_sec = 10u128.pow(n.min(38));
                let nanos = u128::from(raw) * 1_000_000_000 / per_sec;
                Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
            }
            TsUnit::Pow2(n) => {
                let n = n.min(63);
                let secs = raw >> n;
                let frac = raw & ((1u64 << n) - 1);
                let nanos = (u128::from(frac) * 1_000_000_000) >> n;
                Duration::new(secs, nanos as u32)
            }
        }
    }
}

pub struct PacketReader {
    path: PathBuf,
    inner: Inner,
    index: u64,
}

impl PacketReader {
    pub fn open(path: &Path) -> Result<PacketReader, PcapError> {
        let open = || File::open(path).map_err(|source| PcapError::Open { path: path.to_path_buf(), source });
        let mut magic = [0u8; 4];
        open()?
            .read_exact(&mut magic)
            .map_err(|e| PcapError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
        let reader = BufReader::with_capacity(1 << 20, open()?);
        let format_err =
            |e: pcap_file::PcapError| PcapError::Format { path: path.to_path_buf(), reason: e.to_string() };
        let inner = if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            Inner::PcapNg { reader: PcapNgReader::new(reader).map_err(format_err)?, interfaces: Vec::new() }
        } else {
            Inner::Pcap(PcapReader::new(reader).map_err(format_err)?)
        };
        Ok(PacketReader { path: path.to_path_buf(), inner, index: 0 })
    }

    /// Packets read so far.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The next frame; `Ok(None)` at the end. After an error the reader
    /// should not be used further (the file is damaged from there on).
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, PcapError> {
        let err = |index, e: pcap_file::PcapError| PcapError::Packet {
            path: self.path.clone(),
            index,
            reason: e.to_string(),
        };
        match &mut self.inner {
            Inner::Pcap(r) => {
                let linktype = u32::from(r.header().datalink);
                match r.next_packet() {
                    None => Ok(None),
                    Some(Err(e)) => Err(err(self.index, e)),
                    Some(Ok(p)) => {
                        self.index += 1;
                        Ok(Some(RawPacket { ts: p.timestamp, linktype, data: p.data }))
                    }
                }
            }
            Inner::PcapNg { reader, interfaces } => loop {
                let block = match reader.next_block() {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(err(self.index, e)),
                    Some(Ok(b)) => b,
                };
                match block {
                    Block::SectionHeader(_) => interfaces.clear(),
                    Block::InterfaceDescription(idb) => {
                        let unit = idb
                            .options
                            .iter()
                            .find_map(|o| match o {
                                InterfaceDescriptionOption::IfTsResol(v) => Some(TsUnit::from_option(*v)),
                                _ => None,
                            })
                            .unwrap_or(TsUnit::Pow10(6));
                        interfaces.push((u32::from(idb.linktype), unit));
                    }
                    Block::EnhancedPacket(epb) => {
                        self.index += 1;
                        let (linktype, unit) = interfaces
                            .get(epb.interface_id as usize)
                            .copied()
                            .ok_or_else(|| PcapError::Packet {
                                path: self.path.clone(),
                                index: self.index,
                                reason: format!("unknown interface {}", epb.interface_id),
                            })?;
                        let raw = epb.timestamp.as_nanos() as u64;
                        return Ok(Some(RawPacket {
                            ts: unit.to_duration(raw),
                            linktype,
                            data: Cow::Owned(epb.data.into_owned()),
                        }));
                    }
                    Block::SimplePacket(spb) => {
                        self.index += 1;
                        let linktype = interfaces.first().map(|i| i.0).unwrap_or(1);
                        return Ok(Some(RawPacket {
                            ts: Duration::ZERO,
                            linktype,
                            data: Cow::Owned(spb.data.into_owned()),
                        }));
                    }
                    _ => {}
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_units() {
        assert_eq!(TsUnit::Pow10(6).to_duration(1_500_000), Duration::from_millis(1500));
        assert_eq!(TsUnit::Pow10(9).to_duration(7), Duration::from_nanos(7));
        assert_eq!(TsUnit::Pow2(10).to_duration(1024 + 512), Duration::from_millis(1500));
        let _ = TsUnit::Pow10(127).to_duration(u64::MAX);
        let _ = TsUnit::Pow2(127).to_duration(u64::MAX);
    }
}
