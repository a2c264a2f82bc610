//! EVE alerts of the `secret-marker` detector. They carry metadata only:
//! where (the file's path, or the flow and channel), the level, encoding,
//! container chain and the SHA-256 of the whole object; never document
//! text, never an excerpt, never the name of an entry inside an archive.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use canhgac_proto::v1::{RecordFacts, RecordKind};

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

fn record(value: Value, facts: RecordFacts, now: OffsetDateTime) -> NewRecord {
    NewRecord {
        kind: RecordKind::Alert,
        severity: SEVERITY,
        time: now,
        eve_json: value.to_string().into_bytes(),
        facts: Some(facts),
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
    let signature = format!("CANHGAC HOST state-secret marker ({}) in a file", v.level.name());
    // on this host: the collector names the host as the one exposed
    let mut facts = crate::facts::host(DETECTOR, None, None);
    crate::facts::set_signature(&mut facts, sid::SECRET_MARKER, &signature, CATEGORY, "T1005");
    let info = AlertInfo::builtin(sid::SECRET_MARKER, signature, CATEGORY, SEVERITY);
    let c =
        json!({"detector": DETECTOR, "technique": "T1005", "channel": "file", "secret": secret(v, sha256)});
    record(eve::alert(m, info, None, vec![("file", file)], c), facts, now)
}

/// Where an object on the wire was seen.
pub struct WireFacts<'a> {
    pub flow: &'a Flow,
    /// Direction the object travelled.
    pub dir: Dir,
    /// `http`, `smtp`, `pop3`, `imap`, `ftp-data`, `tcp`.
    pub channel: &'static str,
    /// The receiving end is outside the agency's configured networks.
    pub outside: bool,
    pub size: u64,
    pub ts: OffsetDateTime,
}

/// The alert for an object seen on the wire.
pub fn wire_alert(w: &WireFacts<'_>, v: &Verdict, sha256: &str) -> NewRecord {
    let m = eve::flow_base(w.flow, "alert", w.ts);
    let signature = format!("CANHGAC state-secret marker ({}) sent over {}", v.level.name(), w.channel);
    let (client, server) = (w.flow.client, w.flow.server);
    let ep = |e: (std::net::IpAddr, u16)| crate::facts::endpoint(e.0, e.1);
    let mut facts = RecordFacts {
        detector: DETECTOR.into(),
        flow_id: w.flow.id,
        src: Some(ep(client)),
        dest: Some(ep(server)),
        to_client: w.dir == Dir::ToClient,
        ..Default::default()
    };
    crate::facts::set_signature(&mut facts, sid::SECRET_MARKER, &signature, CATEGORY, "T1048.003");
    // the agency's side is exposed; a receiver outside its networks is the
    // party the secret went to
    let (sender, receiver) = if w.dir == Dir::ToServer { (client, server) } else { (server, client) };
    let attackers = if w.outside { vec![ep(receiver)] } else { Vec::new() };
    let victims = if w.outside { vec![ep(sender)] } else { vec![ep(sender), ep(receiver)] };
    crate::facts::set_roles(&mut facts, attackers, victims);
    let info = AlertInfo::builtin(sid::SECRET_MARKER, signature, CATEGORY, SEVERITY);
    let c = json!({
        "detector": DETECTOR,
        "technique": "T1048.003",
        "channel": w.channel,
        "outside": w.outside,
        "object_size": w.size,
        "secret": secret(v, sha256),
    });
    record(eve::alert(m, info, Some(w.dir), Vec::new(), c), facts, w.ts)
}
