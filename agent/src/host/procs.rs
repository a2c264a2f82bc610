//! Listeners and processes, from `/proc`.
//!
//! * `new-listener`: a TCP socket listening, or a UDP socket bound outside
//!   the ephemeral port range, whose (protocol, address, port, program) is
//!   not in the baseline. The owning process comes from `/proc/*/fd`
//!   (`socket:[INODE]`) and `/proc/PID/comm`. The first run builds the
//!   baseline silently; a listener stays in it once seen.
//! * `suspicious-process`: a process whose executable lies in a
//!   world-writable directory (`/tmp`, `/var/tmp`, `/dev/shm`, ...), or was
//!   deleted while running from outside the system directories (a
//!   package upgrade replacing `/usr/sbin/sshd` is not suspicious), or
//!   lives only in memory (`memfd:`). Once per process (pid and start
//!   time).
//!
//! # Persisted state (spool detector state)
//!
//! | key | value |
//! |-----|-------|
//! | `hll` listener key | empty |
//! | `hlp` pid:starttime | empty (processes already reported) |

use std::{
    collections::{BTreeSet, HashMap},
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use canhgac_proto::v1::RecordKind;
use serde_json::{Map, json};
use time::OffsetDateTime;

use super::{HostCounters, commit, config::HostConfig, nap};
use crate::{
    detect::{Output, StateChange},
    eve::{self, AlertInfo, sid},
    spool::{NewRecord, Spool},
};

const LISTENER_KEY: &[u8] = b"hll";
const PROCESS_KEY: &[u8] = b"hlp";
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub proto: &'static str,
    pub address: String,
    pub port: u32,
    pub inode: u64,
}

/// `0100007F:1F90` → ("127.0.0.1", 8080); IPv6 in four little-endian words.
pub fn parse_proc_addr(s: &str) -> Option<(String, u32)> {
    let (addr, port) = s.split_once(':')?;
    let port = u32::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?.swap_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in addr.as_bytes().chunks(8).enumerate() {
                let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?.swap_bytes();
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
            }
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip.to_string(), port))
}

fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999))
}

/// Parses one `/proc/net/{tcp,udp}[6]` table.
pub fn parse_table(text: &str, proto: &'static str, ephemeral: (u32, u32)) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9)) else {
            continue;
        };
        let listening = match proto {
            "tcp" => *state == "0A",
            _ => *state == "07",
        };
        if !listening {
            continue;
        }
        let Some((address, port)) = parse_proc_addr(local) else { continue };
        if proto == "udp" && (port == 0 || (ephemeral.0..=ephemeral.1).contains(&port)) {
            continue;
        }
        out.push(Listener { proto, address, port, inode: inode.parse().unwrap_or(0) });
    }
    out
}

pub fn listeners() -> Vec<Listener> {
    let eph = ephemeral_range();
    let mut out = Vec::new();
    for (file, proto) in [
        ("/proc/net/tcp", "tcp"),
        ("/proc/net/tcp6", "tcp"),
        ("/proc/net/udp", "udp"),
        ("/proc/net/udp6", "udp"),
    ] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(parse_table(&text, proto, eph));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.proto == b.proto && a.address == b.address && a.port == b.port);
    out
}

/// Socket inode → (pid, program) from `/proc/*/fd`.
pub fn socket_owners() -> HashMap<u64, (u32, String)> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else { continue };
        let mut comm = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let t = target.to_string_lossy();
            if let Some(inode) =
                t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')).and_then(|i| i.parse().ok())
            {
                let name = comm
                    .get_or_insert_with(|| {
                        std::fs::read_to_string(e.path().join("comm"))
                            .map(|s| s.trim().to_string())
                            .unwrap_or_default()
                    })
                    .clone();
                out.entry(inode).or_insert((pid, name));
            }
        }
    }
    out
}

/// Why an executable path is suspicious (`None`: it is not).
pub fn suspicious_exe(exe: &str) -> Option<&'static str> {
    if exe.starts_with("/memfd:") {
        return Some("runs from memory (memfd)");
    }
    if let Some(path) = exe.strip_suffix(" (deleted)") {
        let system = ["/usr/", "/bin/", "/sbin/", "/lib", "/opt/", "/snap/", "/nix/"]
            .iter()
            .any(|p| path.starts_with(p));
        if !system {
            return Some("binary deleted while running");
        }
        return None;
    }
    if ["/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/var/lock/"].iter().any(|p| exe.starts_with(p)) {
        return Some("runs from a world-writable directory");
    }
    let parent = Path::new(exe).parent()?;
    let mode = std::fs::metadata(parent).ok()?.permissions().mode();
    (mode & 0o002 != 0).then_some("runs from a world-writable directory")
}

pub struct ProcRunner {
    spool: Spool,
    counters: Arc<HostCounters>,
    listeners: bool,
    processes: bool,
    interval: Duration,
    known: BTreeSet<String>,
    reported: BTreeSet<String>,
}

fn key(prefix: &[u8], k: &str) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(k.as_bytes());
    v
}

impl ProcRunner {
    pub fn new(
        cfg: &HostConfig,
        spool: Spool,
        counters: Arc<HostCounters>,
        restored: &[(Vec<u8>, Vec<u8>)],
    ) -> ProcRunner {
        let mut known = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for (k, _) in restored {
            if let Some(l) = k.strip_prefix(LISTENER_KEY) {
                known.insert(String::from_utf8_lossy(l).into_owned());
            } else if let Some(p) = k.strip_prefix(PROCESS_KEY) {
                reported.insert(String::from_utf8_lossy(p).into_owned());
            }
        }
        ProcRunner {
            spool,
            counters,
            listeners: cfg.listeners.enabled,
            processes: cfg.processes.enabled,
            interval: cfg.listeners.interval.min(cfg.processes.interval),
            known,
            reported,
        }
    }

    pub fn run(&mut self, stop: &AtomicBool) {
        let mut first = self.known.is_empty();
        let mut last = Instant::now() - self.interval;
        while !stop.load(Relaxed) {
            if last.elapsed() >= self.interval {
                last = Instant::now();
                let mut out = Output::default();
                if self.listeners {
                    self.check_listeners(first, &mut out);
                    first = false;
                }
                if self.processes {
                    self.check_processes(&mut out);
                }
                if let Err(e) = commit(&self.spool, &mut out, None, stop) {
                    tracing::error!(error = %e, "listener and process monitor stopped: spool error");
                    return;
                }
            }
            nap(Duration::from_millis(200));
        }
    }

    fn check_listeners(&mut self, silent: bool, out: &mut Output) {
        let owners = socket_owners();
        let now = OffsetDateTime::now_utc();
        for l in listeners() {
            let (pid, program) = owners.get(&l.inode).cloned().unwrap_or((0, String::new()));
            let k = format!("{}/{}/{}/{}", l.proto, l.address, l.port, program);
            if self.known.contains(&k) {
                continue;
            }
            if self.known.len() >= MAX_KEYS {
                HostCounters::set(
                    &self.counters.tracker_evictions,
                    self.counters.tracker_evictions.load(Relaxed) + 1,
                );
                continue;
            }
            self.known.insert(k.clone());
            out.state.push(StateChange::Put(key(LISTENER_KEY, &k), Vec::new()));
            if silent {
                continue;
            }
            let mut m = Map::new();
            m.insert("timestamp".into(), canhgac_proto::timefmt::eve(now).into());
            m.insert("event_type".into(), "alert".into());
            m.insert("dest_ip".into(), l.address.clone().into());
            m.insert("dest_port".into(), l.port.into());
            m.insert("proto".into(), l.proto.to_uppercase().into());
            let sig = format!(
                "CANHGAC HOST new {} listener on {}:{} ({})",
                l.proto.to_uppercase(),
                l.address,
                l.port,
                if program.is_empty() { "unknown process" } else { &program }
            );
            let c = json!({"detector": "new-listener", "technique": "T1571", "process": program, "pid": pid});
            push(out, m, AlertInfo::builtin(sid::NEW_LISTENER, sig, "Misc activity", 3), c, now);
        }
    }

    fn check_processes(&mut self, out: &mut Output) {
        let Ok(rd) = std::fs::read_dir("/proc") else { return };
        let now = OffsetDateTime::now_utc();
        let me = std::process::id();
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if pid == me {
                continue;
            }
            let Ok(exe) = std::fs::read_link(e.path().join("exe")) else { continue };
            let exe = exe.to_string_lossy().into_owned();
            let Some(why) = suspicious_exe(&exe) else { continue };
            let start = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(19).map(String::from))
                })
                .unwrap_or_default();
            let k = format!("{pid}:{start}");
            if self.reported.contains(&k) || self.reported.len() >= MAX_KEYS {
                continue;
            }
            self.reported.insert(k.clone());
            out.state.push(StateChange::Put(key(PROCESS_KEY, &k), Vec::new()));
            let cmdline = std::fs::read(e.path().join("cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .replace('\0', " ")
                        .trim()
                        .chars()
                        .take(512)
                        .collect::<String>()
                })
                .unwrap_or_default();
            let user = std::fs::read_to_string(e.path().join("status"))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("Uid:").and_then(|u| u.split_whitespace().next().map(String::from))
                    })
                })
                .unwrap_or_default();
            let mut m = Map::new();
            m.insert("timestamp".into(), canhgac_proto::timefmt::eve(now).into());
            m.insert("event_type".into(), "alert".into());
            let sig = format!("CANHGAC HOST suspicious process {pid} {exe}: {why}");
            let c = json!({"detector": "suspicious-process", "technique": "T1036", "pid": pid, "exe": exe,
                "cmdline": cmdline, "uid": user, "reason": why});
            push(
                out,
                m,
                AlertInfo::builtin(sid::SUSPICIOUS_PROCESS, sig, "A Network Trojan was detected", 2),
                c,
                now,
            );
        }
    }
}

fn push(
    out: &mut Output,
    m: Map<String, serde_json::Value>,
    info: AlertInfo,
    c: serde_json::Value,
    now: OffsetDateTime,
) {
    let severity = info.severity;
    let detector = c["detector"].as_str().unwrap_or("host");
    let technique = c["technique"].as_str().unwrap_or_default();
    let mut facts = crate::facts::host(detector, None, None);
    crate::facts::set_signature(&mut facts, info.signature_id, &info.signature, &info.category, technique);
    let v = eve::alert(m, info, None, Vec::new(), c);
    out.records.push(NewRecord {
        kind: RecordKind::Alert,
        severity,
        time: now,
        eve_json: v.to_string().into_bytes(),
        facts: Some(facts),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_executables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0\n\
   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 99 1 0\n";
        let l = parse_table(tcp, "tcp", (32768, 60999));
        assert_eq!(l, vec![Listener { proto: "tcp", address: "0.0.0.0".into(), port: 22, inode: 1234 }]);
        let udp = "hdr\n   0: 00000000:0035 00000000:0000 07 0 0 0 0 0 55\n   1: 00000000:9C41 00000000:0000 07 0 0 0 0 0 56\n";
        assert_eq!(
            parse_table(udp, "udp", (32768, 60999)).len(),
            1,
            "ephemeral client sockets are not listeners"
        );
        assert!(suspicious_exe("/tmp/.x/kworker").is_some());
        assert!(suspicious_exe("/dev/shm/miner").is_some());
        assert!(suspicious_exe("/memfd:payload (deleted)").is_some());
        assert!(suspicious_exe("/home/bob/a.out (deleted)").is_some());
        assert!(suspicious_exe("/usr/sbin/sshd (deleted)").is_none(), "an upgraded daemon");
        assert!(suspicious_exe("/usr/bin/bash").is_none());
        assert_eq!(parse_proc_addr("00000000000000000000000001000000:0016"), Some(("::1".into(), 22)));
    }
}
