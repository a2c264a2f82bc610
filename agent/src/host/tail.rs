//! Following a log file across rotation, resumable from a checkpoint.
//!
//! The position of a file is its identity (device, inode), the offset of
//! the first byte not yet consumed, and a fingerprint of its first bytes
//! (BLAKE3 of up to [`HEAD`] bytes, with their count). It is committed to
//! the spool with the records of the lines before it, so after a crash the
//! follower resumes exactly after the last committed line.
//!
//! Rotation:
//!
//! * **rename** (`auth.log` → `auth.log.1`, new `auth.log`): the open
//!   handle still reads the old file; it is read to its end (a last line
//!   without newline included), then the new file from its start;
//! * **copytruncate** (copied to `auth.log.1`, then truncated): the file
//!   is shorter than the offset; what was not read yet is read from the
//!   copy (found by its fingerprint), then the file from its start;
//! * **compression** of the rotated file (`auth.log.1.gz`): found by the
//!   fingerprint of its decompressed start;
//! * **the agent stopped in between**: at start, a file whose identity and
//!   fingerprint no longer match the checkpoint is looked for among the
//!   rotated siblings (`NAME.1`, `NAME-20261123`, `NAME.1.gz`, ...); its
//!   remainder is read first, then every rotated generation written after
//!   it (siblings named `NAME.N`, `NAME-YYYYMMDD[HH]`, optionally `.gz`,
//!   modified later, oldest first: the agent was down across several
//!   rotations), then the followed file. When it cannot be found (deleted)
//!   the lines are lost: counted and logged, never read twice.
//!
//! Only complete lines are consumed while a file may still grow; a file
//! that appears later is followed from its start.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::lines::{self, Line};

/// Whether what follows a log's name is a rotation suffix: `.N`,
/// `-YYYYMMDD` or `-YYYYMMDDHH`, each optionally `.gz`.
fn is_generation(rest: &str) -> bool {
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (rest.strip_prefix('.'), rest.strip_prefix('-')) {
        (Some(n), _) => digits(n) && n.len() <= 4,
        (_, Some(d)) => digits(d) && (d.len() == 8 || d.len() == 10),
        _ => false,
    }
}

/// Bytes of the file start that identify it.
pub const HEAD: usize = 1024;

/// Position in one followed file (part of the checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// BLAKE3 of the first `head_len` bytes, hex.
    pub head: String,
    pub head_len: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailStats {
    pub rotations: u64,
    pub truncations: u64,
    /// Bytes that could not be read (rotated away and deleted while the
    /// agent was down, unreadable files).
    pub lost_bytes: u64,
    pub read_errors: u64,
}

fn fingerprint(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// The start of a file (decompressed for `.gz`).
fn head_of(path: &Path, n: usize) -> io::Result<Vec<u8>> {
    let mut r = lines::open(path)?;
    let mut buf = Vec::with_capacity(n);
    (&mut r).take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

struct Open {
    reader: BufReader<File>,
    pos: Position,
}

/// One followed path.
pub struct Follower {
    pub path: PathBuf,
    open: Option<Open>,
    /// A rotated file to finish first: reader positioned at the offset,
    /// and the position in it (the old file's identity).
    backlog: Option<(PathBuf, Box<dyn BufRead + Send>, Position)>,
    /// Whole rotated generations to read after the backlog, oldest first.
    pending: std::collections::VecDeque<PathBuf>,
    pub stats: TailStats,
    buf: Vec<u8>,
    missing_logged: bool,
}

/// A line handed to the caller.
pub struct Got<'a> {
    pub data: &'a [u8],
    pub truncated: bool,
    /// Offset of the line in the file it came from.
    pub offset: u64,
    /// Which file (the followed path or a rotated sibling).
    pub file: &'a Path,
}

impl Follower {
    /// `resume`: the committed position, if any; `from_end`: where to start
    /// in a file seen for the first time (the rest of an existing log is
    /// history, not news).
    pub fn new(path: PathBuf, resume: Option<Position>, from_end: bool) -> Follower {
        let mut f = Follower {
            path,
            open: None,
            backlog: None,
            pending: Default::default(),
            stats: TailStats::default(),
            buf: Vec::new(),
            missing_logged: false,
        };
        f.start(resume, from_end);
        f
    }

    fn start(&mut self, resume: Option<Position>, from_end: bool) {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            if let Some(pos) = resume {
                // rotated away while we were down, nothing new yet
                self.find_backlog(&pos);
            }
            return;
        };
        match resume {
            Some(pos) => {
                let same_file = meta.dev() == pos.dev
                    && meta.ino() == pos.ino
                    && self.head_matches(&self.path.clone(), &pos);
                if same_file && meta.len() >= pos.offset {
                    self.open_at(pos.offset);
                } else {
                    // rotated (or truncated) while we were down
                    if same_file {
                        self.stats.truncations += 1;
                    } else {
                        self.stats.rotations += 1;
                    }
                    self.find_backlog(&pos);
                    self.open_at(0);
                }
            }
            None => self.open_at(if from_end { meta.len() } else { 0 }),
        }
    }

    fn head_matches(&self, path: &Path, pos: &Position) -> bool {
        if pos.head_len == 0 {
            return true;
        }
        match head_of(path, pos.head_len as usize) {
            Ok(h) => h.len() as u64 == pos.head_len && fingerprint(&h) == pos.head,
            Err(_) => false,
        }
    }

    /// Finds the rotated sibling holding `pos`'s file and queues its rest.
    fn find_backlog(&mut self, pos: &Position) {
        if pos.offset == 0 && pos.head_len == 0 {
            return;
        }
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let n = p.file_name()?.to_str()?.to_string();
                (n != name && n.starts_with(name)).then_some(())?;
                Some((e.metadata().ok()?.modified().ok()?, p))
            })
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (_, cand) in candidates.into_iter().take(16) {
            let Ok(meta) = std::fs::metadata(&cand) else { continue };
            let same_inode = meta.dev() == pos.dev && meta.ino() == pos.ino;
            let same_start = pos.head_len > 0 && self.head_matches(&cand, pos);
            if !(same_inode || same_start) {
                continue;
            }
            match lines::open(&cand) {
                Ok(mut r) => {
                    // skip what was consumed already
                    match io::copy(&mut (&mut r).take(pos.offset), &mut io::sink()) {
                        Ok(n) if n == pos.offset => {
                            tracing::info!(file = %cand.display(), offset = pos.offset, "reading the rest of the rotated log");
                            self.backlog = Some((cand.clone(), r, pos.clone()));
                        }
                        _ => self.stats.read_errors += 1,
                    }
                }
                Err(_) => self.stats.read_errors += 1,
            }
            self.pending = self.later_generations(dir, name, &cand);
            return;
        }
        tracing::warn!(file = %self.path.display(), offset = pos.offset, "the rotated log was not found: its unread lines are lost");
        self.stats.lost_bytes += 1;
    }

    /// Rotated generations of `name` modified after `after`, oldest first,
    /// other than the followed file itself.
    fn later_generations(&self, dir: &Path, name: &str, after: &Path) -> std::collections::VecDeque<PathBuf> {
        let since = std::fs::metadata(after).and_then(|m| m.modified()).ok();
        let current = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        let after_id = std::fs::metadata(after).ok().map(|m| (m.dev(), m.ino()));
        let mut later: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let n = p.file_name()?.to_str()?.to_string();
                is_generation(n.strip_prefix(name)?).then_some(())?;
                let m = e.metadata().ok()?;
                let id = Some((m.dev(), m.ino()));
                (id != current && id != after_id).then_some(())?;
                let t = m.modified().ok()?;
                since.is_none_or(|s| t > s).then_some((t, p))
            })
            .collect();
        later.sort();
        if !later.is_empty() {
            tracing::info!(file = %self.path.display(), generations = later.len(), "rotated more than once while stopped: reading every generation");
        }
        later.into_iter().map(|(_, p)| p).collect()
    }

    /// Starts the next whole rotated generation, if any.
    fn next_generation(&mut self) {
        while let Some(p) = self.pending.pop_front() {
            let opened = (|| -> io::Result<(Box<dyn BufRead + Send>, Position)> {
                let meta = std::fs::metadata(&p)?;
                let head = head_of(&p, HEAD)?;
                let pos = Position {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    offset: 0,
                    head: fingerprint(&head),
                    head_len: head.len() as u64,
                };
                Ok((lines::open(&p)?, pos))
            })();
            match opened {
                Ok((r, pos)) => {
                    self.backlog = Some((p, r, pos));
                    return;
                }
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "cannot read a rotated log: its lines are lost");
                    self.stats.read_errors += 1;
                }
            }
        }
    }

    fn open_at(&mut self, offset: u64) {
        let path = self.path.clone();
        let opened = (|| -> io::Result<Open> {
            let mut f = File::open(&path)?;
            let meta = f.metadata()?;
            f.seek(SeekFrom::Start(offset.min(meta.len())))?;
            let head = head_of(&path, HEAD)?;
            Ok(Open {
                reader: BufReader::with_capacity(64 * 1024, f),
                pos: Position {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    offset: offset.min(meta.len()),
                    head: fingerprint(&head),
                    head_len: head.len() as u64,
                },
            })
        })();
        match opened {
            Ok(o) => {
                self.open = Some(o);
                self.missing_logged = false;
            }
            Err(e) => {
                if !self.missing_logged {
                    tracing::warn!(file = %path.display(), error = %e, "cannot open log file; watching for it");
                    self.missing_logged = true;
                }
                if e.kind() != io::ErrorKind::NotFound {
                    self.stats.read_errors += 1;
                }
            }
        }
    }

    /// The position to commit (after the last line handed out). While a
    /// rotated file is being finished, its position: a restart finds it
    /// again.
    pub fn position(&self) -> Option<Position> {
        if let Some((_, _, pos)) = &self.backlog {
            return Some(pos.clone());
        }
        self.open.as_ref().map(|o| o.pos.clone())
    }

    /// Hands out up to `max` lines; returns how many. Call again while it
    /// returns `max`.
    pub fn poll(&mut self, max: usize, mut f: impl FnMut(Got<'_>)) -> usize {
        let mut n = 0;
        // 1. the rest of a rotated file
        while n < max {
            let Some((path, reader, pos)) = self.backlog.as_mut() else { break };
            match lines::read_line(reader, &mut self.buf, super::logfmt::MAX_LINE) {
                Ok(Some(l)) => {
                    f(Got { data: &self.buf, truncated: l.truncated, offset: pos.offset, file: path });
                    pos.offset += l.consumed;
                    n += 1;
                }
                Ok(None) => {
                    self.backlog = None;
                    self.next_generation();
                }
                Err(_) => {
                    self.stats.read_errors += 1;
                    self.backlog = None;
                    self.next_generation();
                }
            }
        }
        if self.backlog.is_some() {
            return n;
        }
        // 2. the followed file, watching for rotation
        if self.open.is_none() {
            if !self.path.exists() {
                return n;
            }
            // appeared: read it from the start
            self.open_at(0);
        }
        let Some(open) = self.open.as_mut() else { return n };
        let current = std::fs::metadata(&self.path).ok();
        let rotated = current.as_ref().is_some_and(|m| m.dev() != open.pos.dev || m.ino() != open.pos.ino);
        let size = open.reader.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
        let pos_now = open.pos.clone();
        // truncated, possibly already written again past our offset
        let regrown = !rotated && size >= pos_now.offset && pos_now.head_len > 0 && {
            let path = self.path.clone();
            !self.head_matches(&path, &pos_now)
        };
        let Some(open) = self.open.as_mut() else { return n };
        if !rotated && (size < open.pos.offset || regrown) {
            // copytruncate: finish from the copy, then start over
            self.stats.truncations += 1;
            let pos = open.pos.clone();
            self.open = None;
            self.find_backlog(&pos);
            self.open_at(0);
            return n + self.poll(max - n, f);
        }
        while n < max {
            let Some(open) = self.open.as_mut() else { break };
            let path = self.path.as_path();
            match read_complete(&mut open.reader, &mut self.buf, rotated) {
                Ok(Some(l)) => {
                    f(Got { data: &self.buf, truncated: l.truncated, offset: open.pos.offset, file: path });
                    open.pos.offset += l.consumed;
                    n += 1;
                }
                Ok(None) => {
                    if rotated {
                        // the old file is read to its end: the new one now
                        self.stats.rotations += 1;
                        tracing::info!(file = %self.path.display(), "log rotated; following the new file");
                        self.open = None;
                        if current.is_some() {
                            self.open_at(0);
                            return n + self.poll(max - n, f);
                        }
                    }
                    break;
                }
                Err(_) => {
                    self.stats.read_errors += 1;
                    break;
                }
            }
        }
        n
    }
}

/// A complete line, or (when the file is finished) the last partial one.
/// A partial line of a growing file is left for later.
fn read_complete(r: &mut BufReader<File>, buf: &mut Vec<u8>, finished: bool) -> io::Result<Option<Line>> {
    let start = r.stream_position()?;
    match lines::read_line(r, buf, super::logfmt::MAX_LINE)? {
        Some(l) if l.complete || finished => Ok(Some(l)),
        Some(_) => {
            r.seek(SeekFrom::Start(start))?;
            Ok(None)
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn drain(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        while f.poll(100, |g| out.push(String::from_utf8_lossy(g.data).into_owned())) == 100 {}
        out
    }

    #[test]
    fn rename_copytruncate_gzip_and_restarts_lose_and_repeat_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, "a1\na2\n");
        let mut f = Follower::new(log.clone(), None, false);
        assert_eq!(drain(&mut f), ["a1", "a2"]);
        append(&log, "a3\npart");
        assert_eq!(drain(&mut f), ["a3"], "a partial line waits");
        append(&log, "ial\n");
        assert_eq!(drain(&mut f), ["partial"]);
        // rename rotation with a line written just before it
        append(&log, "a4\n");
        std::fs::rename(&log, dir.path().join("auth.log.1")).unwrap();
        append(&log, "b1\n");
        assert_eq!(drain(&mut f), ["a4", "b1"]);
        // copytruncate while behind
        append(&log, "b2\n");
        std::fs::copy(&log, dir.path().join("auth.log.2")).unwrap();
        std::fs::write(&log, "").unwrap();
        append(&log, "c1\n");
        assert_eq!(drain(&mut f), ["b2", "c1"]);
        // restart from a checkpoint, after a rename and a gzip of the old file
        let pos = f.position().unwrap();
        drop(f);
        append(&log, "c2\n");
        let rotated = dir.path().join("auth.log.3");
        std::fs::rename(&log, &rotated).unwrap();
        let gz = dir.path().join("auth.log.3.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::default());
        enc.write_all(&std::fs::read(&rotated).unwrap()).unwrap();
        enc.finish().unwrap();
        std::fs::remove_file(&rotated).unwrap();
        append(&log, "d1\n");
        let mut f = Follower::new(log.clone(), Some(pos), false);
        assert_eq!(drain(&mut f), ["c2", "d1"]);
        // restart with nothing new: nothing again
        let pos = f.position().unwrap();
        let mut f = Follower::new(log.clone(), Some(pos), false);
        assert!(drain(&mut f).is_empty());
        // a missing file is followed from when it appears
        let later = dir.path().join("secure");
        let mut g = Follower::new(later.clone(), None, true);
        assert!(drain(&mut g).is_empty());
        append(&later, "s1\n");
        assert_eq!(drain(&mut g), ["s1"]);
    }

    /// logrotate twice while the agent is stopped (`.1` shifted to `.2`, the
    /// file it was reading in between moved to `.1`, then compressed): the
    /// rest of the file it was in, the whole middle generation, then the
    /// new file; nothing read twice after a further restart.
    #[test]
    #[allow(clippy::disallowed_methods)] // distinct modification times
    fn two_rotations_while_stopped_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let rotated = |n: &str| dir.path().join(format!("access.log{n}"));
        append(&log, "f1\n");
        let mut f = Follower::new(log.clone(), None, false);
        assert_eq!(drain(&mut f), ["f1"]);
        let pos = f.position().unwrap();
        drop(f);
        append(&log, "f2\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::rename(&log, rotated(".1")).unwrap();
        append(&log, "g1\ng2\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::rename(rotated(".1"), rotated(".2")).unwrap();
        std::fs::rename(&log, rotated(".1")).unwrap();
        append(&log, "h1\n");
        // unrelated files with the same prefix are not generations
        append(&dir.path().join("access.log.bak-copy"), "x\n");
        append(&dir.path().join("access.log-old"), "y\n");
        let mut f = Follower::new(log.clone(), Some(pos), false);
        let mut got = Vec::new();
        // a checkpoint taken in the middle generation resumes there
        f.poll(2, |g| got.push(String::from_utf8_lossy(g.data).into_owned()));
        let mid = f.position().unwrap();
        drop(f);
        let mut f = Follower::new(log.clone(), Some(mid), false);
        got.extend(drain(&mut f));
        assert_eq!(got, ["f2", "g1", "g2", "h1"]);
        let pos = f.position().unwrap();
        let mut f = Follower::new(log.clone(), Some(pos), false);
        assert!(drain(&mut f).is_empty());
        assert!(is_generation(".1") && is_generation(".12.gz") && is_generation("-20261206"));
        assert!(!is_generation(".bak") && !is_generation("-old") && !is_generation(".json.log"));
    }
}
