//! Central policy pushed by the collector: indicator lists, rule files and
//! detector settings, applied without a restart.
//!
//! Layout under `STATE_DIR/policy/` (mode 0700):
//!
//! | path             | content                                              |
//! |------------------|------------------------------------------------------|
//! | `v<N>/<name>`    | the files of policy version N, as sent                |
//! | `current.toml`   | `version`, `digest` of the policy in force (atomic)   |
//!
//! A new version is written to `v<N>.tmp/`, checked (hashes, digest,
//! indicator lists parse, settings are valid), renamed to `v<N>/`, and
//! only then `current.toml` is replaced: a crash leaves either the old or
//! the new policy in force, never a mix. Older version directories are
//! removed afterwards. Rule files (`rules`) are kept for the rule engine;
//! web-attack signatures (`websig`) are added to the configured ones and
//! swapped into the log monitor within a second;
//! indicator lists (`ioc`) are added to the configured lists; `settings`
//! (TOML: `[ioc] severity`, `[detect] dedup_capacity`) override the
//! configuration.
//!
//! Swapping the detection engine happens in the capture loop of
//! [`crate::daemon`] at a commit point; [`Policy::apply`] waits for it.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use canhgac_proto::v1::{PolicyApplied, PolicyStatus, PolicyUpdate};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::watch;

use crate::{detect::ioc, state};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Current {
    version: u64,
    digest: String,
}

/// Detector settings a policy may carry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub ioc: IocSettings,
    #[serde(default)]
    pub detect: DetectSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IocSettings {
    pub severity: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSettings {
    pub dedup_capacity: Option<usize>,
}

/// What the capture loop builds its engine from.
#[derive(Debug, Clone, Default)]
pub struct Active {
    pub version: u64,
    pub ioc_files: Vec<PathBuf>,
    pub rule_files: Vec<PathBuf>,
    /// Web-attack signature files (`*.websig`), after the configured ones.
    pub web_signature_files: Vec<PathBuf>,
    pub settings: Settings,
}

struct Inner {
    dir: PathBuf,
    status: Mutex<PolicyStatus>,
    active: Mutex<Active>,
    /// Bumped when a new policy must be swapped in.
    swap: watch::Sender<u64>,
    /// The version the detection engine runs.
    applied: watch::Sender<u64>,
    /// Whether a capture loop is running to swap it in.
    running: AtomicBool,
}

/// Shared between the uplink (receives updates) and the capture loop
/// (swaps the engine).
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PolicyError + 'a {
    move |source| PolicyError::Io { action, path: path.to_path_buf(), source }
}

fn digest(files: &[(String, String, String)]) -> String {
    let mut sorted = files.to_vec();
    sorted.sort();
    let mut h = sha2::Sha256::new();
    for (name, kind, sha) in &sorted {
        h.update(format!("{name} {kind} {sha}\n"));
    }
    hex::encode(h.finalize())
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && !n.starts_with('.')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Reads the files of a stored version.
fn active_from(dir: &Path, version: u64) -> Result<(Active, usize), PolicyError> {
    let vdir = dir.join(format!("v{version}"));
    let mut a = Active { version, ..Default::default() };
    let mut names: Vec<PathBuf> = std::fs::read_dir(&vdir)
        .map_err(io("read", &vdir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let mut settings_text = None;
    for p in names {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        match kind_of_stored(&name) {
            "rules" => a.rule_files.push(p),
            "websig" => a.web_signature_files.push(p),
            "settings" => settings_text = Some(std::fs::read_to_string(&p).map_err(io("read", &p))?),
            _ => a.ioc_files.push(p),
        }
    }
    if let Some(t) = settings_text {
        a.settings = parse_settings(&t)?;
    }
    let (set, _) =
        ioc::IocSet::load(&a.ioc_files).map_err(|e| PolicyError::Invalid(format!("indicator list: {e}")))?;
    crate::host::web::SignatureSet::load(&a.web_signature_files)
        .map_err(|e| PolicyError::Invalid(format!("web signatures: {e}")))?;
    Ok((a, set.len()))
}

/// Stored files carry their kind as a suffix added by [`Policy::apply`]
/// when the name does not show it.
fn kind_of_stored(name: &str) -> &'static str {
    if name.ends_with(".rules") {
        "rules"
    } else if name.ends_with(".websig") {
        "websig"
    } else if name.ends_with(".toml") {
        "settings"
    } else {
        "ioc"
    }
}

fn parse_settings(text: &str) -> Result<Settings, PolicyError> {
    let s: Settings = toml::from_str(text)
        .map_err(|e| PolicyError::Invalid(format!("settings: {}", e.message().trim())))?;
    if let Some(v) = s.ioc.severity
        && !(1..=4).contains(&v)
    {
        return Err(PolicyError::Invalid(format!("settings: ioc.severity {v} is out of range (1 to 4)")));
    }
    if let Some(v) = s.detect.dedup_capacity
        && !(1..=100_000_000).contains(&v)
    {
        return Err(PolicyError::Invalid(format!("settings: detect.dedup_capacity {v} is out of range")));
    }
    Ok(s)
}

impl Policy {
    /// Opens the policy directory and loads the policy in force, if any.
    pub fn open(state_dir: &Path) -> Result<Policy, PolicyError> {
        let dir = state_dir.join("policy");
        state::create_private_dir(&dir).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let mut status = PolicyStatus::default();
        let mut active = Active::default();
        let cur = dir.join("current.toml");
        if cur.exists() {
            let text = std::fs::read_to_string(&cur).map_err(io("read", &cur))?;
            let c: Current = toml::from_str(&text)
                .map_err(|e| PolicyError::Invalid(format!("{}: {}", cur.display(), e.message())))?;
            match active_from(&dir, c.version) {
                Ok((a, n)) => {
                    status = PolicyStatus {
                        version: c.version,
                        digest: c.digest,
                        error: String::new(),
                        ioc_entries: n as u64,
                        rule_files: Vec::new(),
                    };
                    active = a;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the stored policy cannot be loaded; running without it");
                    status.error = e.to_string();
                }
            }
        }
        let version = active.version;
        Ok(Policy {
            inner: Arc::new(Inner {
                dir,
                status: Mutex::new(status),
                active: Mutex::new(active),
                swap: watch::Sender::new(version),
                applied: watch::Sender::new(version),
                running: AtomicBool::new(false),
            }),
        })
    }

    /// Records how the policy's rule files loaded (reported with the
    /// status).
    pub fn set_rule_file_loads(&self, loads: Vec<canhgac_proto::v1::PolicyFileLoad>) {
        self.inner.status.lock().unwrap_or_else(|p| p.into_inner()).rule_files = loads;
    }

    /// What the agent reports in Hello and heartbeats.
    pub fn status(&self) -> PolicyStatus {
        self.inner.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The policy the detection engine should run.
    pub fn active(&self) -> Active {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes when a new policy must be swapped in.
    pub fn swap_signal(&self) -> watch::Receiver<u64> {
        self.inner.swap.subscribe()
    }

    /// Called by the capture loop once its engine runs `version`.
    pub fn mark_applied(&self, version: u64) {
        self.inner.applied.send_replace(version);
    }

    pub fn set_running(&self, running: bool) {
        self.inner.running.store(running, Ordering::SeqCst);
    }

    /// Stores, checks and activates a policy; waits (up to 30 s) until the
    /// detection engine runs it. The answer goes back to the collector.
    pub async fn apply(&self, update: PolicyUpdate) -> PolicyApplied {
        let version = update.version;
        let digest_sent = update.digest.clone();
        let this = self.clone();
        let stored = tokio::task::spawn_blocking(move || this.store(update)).await;
        let result = match stored {
            Ok(r) => r,
            Err(e) => Err(PolicyError::Invalid(format!("task failed: {e}"))),
        };
        match result {
            Ok(entries) => {
                let mut applied = self.inner.applied.subscribe();
                self.inner.swap.send_replace(version);
                if self.inner.running.load(Ordering::SeqCst) {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), applied.wait_for(|v| *v >= version))
                            .await;
                } else {
                    self.mark_applied(version);
                }
                tracing::info!(version, ioc_entries = entries, "policy applied");
                PolicyApplied {
                    version,
                    ok: true,
                    error: String::new(),
                    digest: digest_sent,
                    ioc_entries: entries as u64,
                }
            }
            Err(e) => {
                tracing::warn!(version, error = %e, "policy refused");
                let mut s = self.inner.status.lock().unwrap_or_else(|p| p.into_inner());
                s.error = format!("version {version}: {e}");
                PolicyApplied {
                    version,
                    ok: false,
                    error: e.to_string(),
                    digest: digest_sent,
                    ioc_entries: 0,
                }
            }
        }
    }

    fn store(&self, update: PolicyUpdate) -> Result<usize, PolicyError> {
        let dir = &self.inner.dir;
        let mut described = Vec::new();
        for f in &update.files {
            if !valid_name(&f.name) {
                return Err(PolicyError::Invalid(format!("invalid file name `{}`", f.name)));
            }
            let sha = hex::encode(sha2::Sha256::digest(&f.content));
            if sha != f.sha256 {
                return Err(PolicyError::Invalid(format!("file `{}`: SHA-256 mismatch", f.name)));
            }
            described.push((f.name.clone(), f.kind.clone(), sha));
        }
        if digest(&described) != update.digest {
            return Err(PolicyError::Invalid("policy digest mismatch".into()));
        }
        let tmp = dir.join(format!("v{}.tmp", update.version));
        let _ = std::fs::remove_dir_all(&tmp);
        state::create_private_dir(&tmp).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        for f in &update.files {
            // The stored name shows the kind, so a restart reads it back right.
            let name = match (f.kind.as_str(), kind_of_stored(&f.name)) {
                ("rules", "rules") | ("settings", "settings") | ("ioc", "ioc") | ("websig", "websig") => {
                    f.name.clone()
                }
                ("rules", _) => format!("{}.rules", f.name),
                ("websig", _) => format!("{}.websig", f.name),
                ("settings", _) => format!("{}.toml", f.name),
                (_, _) => format!("{}.ioc", f.name),
            };
            state::write_atomic(&tmp.join(&name), &f.content, 0o600)
                .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        }
        let final_dir = dir.join(format!("v{}", update.version));
        let _ = std::fs::remove_dir_all(&final_dir);
        std::fs::rename(&tmp, &final_dir).map_err(io("rename", &tmp))?;
        let (active, entries) = match active_from(dir, update.version) {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&final_dir);
                return Err(e);
            }
        };
        let cur = Current { version: update.version, digest: update.digest.clone() };
        let text = toml::to_string(&cur).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        state::write_atomic(&dir.join("current.toml"), text.as_bytes(), 0o600)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('v') && n != format!("v{}", update.version) && e.path().is_dir() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        *self.inner.active.lock().unwrap_or_else(|p| p.into_inner()) = active;
        *self.inner.status.lock().unwrap_or_else(|p| p.into_inner()) = PolicyStatus {
            version: update.version,
            digest: update.digest,
            error: String::new(),
            ioc_entries: entries as u64,
            rule_files: Vec::new(),
        };
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canhgac_proto::v1::PolicyFile;

    fn update(version: u64, files: &[(&str, &str, &str)]) -> PolicyUpdate {
        let files: Vec<PolicyFile> = files
            .iter()
            .map(|(n, k, c)| PolicyFile {
                name: n.to_string(),
                kind: k.to_string(),
                content: c.as_bytes().to_vec(),
                sha256: hex::encode(sha2::Sha256::digest(c.as_bytes())),
            })
            .collect();
        let d: Vec<_> = files.iter().map(|f| (f.name.clone(), f.kind.clone(), f.sha256.clone())).collect();
        PolicyUpdate { version, digest: digest(&d), files, created: None }
    }

    #[tokio::test]
    async fn applies_persists_and_refuses_bad_policies() {
        let dir = tempfile::tempdir().unwrap();
        let p = Policy::open(dir.path()).unwrap();
        assert_eq!(p.status().version, 0);
        let ok = update(
            3,
            &[
                ("national.txt", "ioc", "203.0.113.7\nevil.example\n"),
                ("s.toml", "settings", "[ioc]\nseverity = 1\n"),
                ("et", "rules", "alert ip any any -> any any (sid:1;)"),
                (
                    "local",
                    "websig",
                    "[[signature]]\nid = 9001\ncategory = \"exploit\"\nname = \"x\"\npattern = '/secret-admin'\n",
                ),
            ],
        );
        let r = p.apply(ok).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.ioc_entries, 2);
        let a = p.active();
        assert_eq!(
            (a.version, a.ioc_files.len(), a.rule_files.len(), a.settings.ioc.severity),
            (3, 1, 1, Some(1))
        );
        assert!(a.web_signature_files[0].ends_with("local.websig"), "{:?}", a.web_signature_files);
        // a web signature that does not compile is refused
        let bad = update(
            4,
            &[(
                "w.websig",
                "websig",
                "[[signature]]\nid = 1\ncategory = \"x\"\nname = \"x\"\npattern = '('\n",
            )],
        );
        let r = p.apply(bad).await;
        assert!(!r.ok && r.error.contains("web signatures") && r.error.contains("invalid pattern"), "{r:?}");
        // a bad settings file is refused and the old policy stays
        let bad = update(4, &[("s.toml", "settings", "[ioc]\nseverity = 9\n")]);
        let r = p.apply(bad).await;
        assert!(!r.ok && r.error.contains("out of range"), "{r:?}");
        assert_eq!(p.status().version, 3);
        let mut tampered = update(5, &[("a.txt", "ioc", "1.2.3.4\n")]);
        tampered.files[0].content = b"6.6.6.6\n".to_vec();
        assert!(p.apply(tampered).await.error.contains("SHA-256"));
        // survives a restart
        let again = Policy::open(dir.path()).unwrap();
        assert_eq!(again.status().version, 3);
        assert_eq!(again.active().rule_files.len(), 1);
    }
}
