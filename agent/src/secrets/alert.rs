//! EVE alerts of the `secret-marker` detector. They carry metadata only:
//! where (the file's path, or the flow and channel), the level, encoding,
//! container chain and the SHA-256 of the whole object; never document
//! text, never an excerpt, never the name of an entry inside an archive.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use canhgac_proto::v1::RecordKind;

use super::Verdict;
use crate::{
    eve::{self, AlertInfo, sid},
    flow::{Dir, Flow},
    spool::NewRecord,
};

pub const DETECTOR: &str = "secret-marker";
/// EVE `alert.category` (not one of the informational categories, so the
/// collector opens an incident).
pub const CATEGORY: &str = "State Secret Exposure";
pub const SEVERITY: u32 = 1;

/// What is known of a file with a marker.
#[derive(Debug, Clone)]
pub struct FileFacts {
    pub path: String,
    pub size: u64,
    pub owner: String,
    pub uid: Option<u32>,
    pub mtime: Option<OffsetDateTime>,
}

impl FileFacts {
    /// Facts of a file on this host (owner by name from `/etc/passwd`,
    /// else the numeric uid).
    pub fn of(path: &std::path::Path, size: u64) -> FileFacts {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path).ok();
        let uid = meta.as_ref().map(|m| m.uid());
        let mtime = meta.as_ref().and_then(|m| OffsetDateTime::from_unix_timestamp(m.mtime()).ok());
        let owner = uid.map(|u| user_name(u).unwrap_or_else(|| u.to_string())).unwrap_or_default();
        FileFacts { path: path.display().to_string(), size, owner, uid, mtime }
    }
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

fn secret(v: &Verdict, sha256: &str) -> Value {
    json!({
        "level": v.level.name(),
        "encoding": v.encoding.name(),
        "container": v.container,
        "sha256": sha256,
    })
}

fn record(value: Value, now: OffsetDateTime) -> NewRecord {
    NewRecord {
        kind: RecordKind::Alert,
        severity: SEVERITY,
        time: now,
        eve_json: value.to_string().into_bytes(),
    }
}

/// The alert for a file on this host.
pub fn file_alert(f: &FileFacts, v: &Verdict, sha256: &str, now: OffsetDateTime) -> NewRecord {
    let mut m = Map::new();
    m.insert("timestamp".into(), canhgac_proto::timefmt::eve(now).into());
    m.insert("event_type".into(), "alert".into());
    let mut file = json!({"path": f.path, "size": f.size, "owner": f.owner});
    if let Some(obj) = file.as_object_mut() {
        if let Some(uid) = f.uid {
            obj.insert("uid".into(), uid.into());
        }
        if let Some(t) = f.mtime {
            obj.insert("mtime".into(), canhgac_proto::timefmt::eve(t).into());
        }
    }
    let info = AlertInfo::builtin(
        sid::SECRET_MARKER,
        format!("CANHGAC HOST state-secret marker ({}) in a file", v.level.name()),
        CATEGORY,
        SEVERITY,
    );
    let c =
        json!({"detector": DETECTOR, "technique": "T1005", "channel": "file", "secret": secret(v, sha256)});
    record(eve::alert(m, info, None, vec![("file", file)], c), now)
}

/// Where an object on the wire was seen.
pub struct WireFacts<'a> {
    pub flow: &'a Flow,
    /// Direction the object travelled.
    pub dir: Dir,
    /// `http`, `smtp`, `ftp-data`, `tcp`.
    pub channel: &'static str,
    /// The receiving end is outside the agency's configured networks.
    pub outside: bool,
    pub size: u64,
    pub ts: OffsetDateTime,
}

/// The alert for an object seen on the wire.
pub fn wire_alert(w: &WireFacts<'_>, v: &Verdict, sha256: &str) -> NewRecord {
    let m = eve::flow_base(w.flow, "alert", w.ts);
    let info = AlertInfo::builtin(
        sid::SECRET_MARKER,
        format!("CANHGAC state-secret marker ({}) sent over {}", v.level.name(), w.channel),
        CATEGORY,
        SEVERITY,
    );
    let c = json!({
        "detector": DETECTOR,
        "technique": "T1048.003",
        "channel": w.channel,
        "outside": w.outside,
        "object_size": w.size,
        "secret": secret(v, sha256),
    });
    record(eve::alert(m, info, Some(w.dir), Vec::new(), c), w.ts)
}
