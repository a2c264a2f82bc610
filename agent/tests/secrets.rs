//! State-secret markers over the generated corpus (tests/secrets/, written
//! by tests/secrets/_gen/gen.py): every marked document found with its
//! level, encoding and container; no alert on unmarked documents and hard
//! negatives; damaged inputs bounded and counted; no document text in any
//! output.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use canhgac_agent::secrets::{Scanner, cli};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/secrets")
}

struct Expect {
    path: String,
    level: Option<String>,
    encoding: String,
    container: String,
}

fn expected() -> Vec<Expect> {
    let text = std::fs::read_to_string(root().join("expected.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Expect {
                path: f[0].to_string(),
                level: (f[1] != "-").then(|| f[1].to_string()),
                encoding: f[2].to_string(),
                container: f[3].to_string(),
            }
        })
        .collect()
}

fn is_document(e: &Expect) -> bool {
    e.container != "bad" && !e.path.starts_with("capture/")
}

#[test]
fn secrets_corpus_every_marked_document_found_and_no_false_alerts() {
    let scanner = Scanner::default();
    let mut failures = Vec::new();
    let mut marked = 0;
    for e in expected().iter().filter(|e| is_document(e)) {
        let data = std::fs::read(root().join("corpus").join(&e.path)).unwrap();
        let name = e.path.rsplit('/').next();
        let r = scanner.scan(&data, name);
        let got =
            r.verdict.as_ref().map(|v| (v.level.name().to_string(), v.encoding.name(), v.container.clone()));
        let want = e.level.as_ref().map(|l| (l.clone(), e.encoding.as_str(), e.container.clone()));
        marked += usize::from(want.is_some());
        if got.as_ref().map(|g| (g.0.clone(), g.1, g.2.clone())) != want {
            failures.push(format!("{}: got {got:?}, want {:?} over {}", e.path, e.level, e.container));
        }
        assert_eq!(r.errors, 0, "{}", e.path);
    }
    assert!(marked >= 120, "{marked}");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn secrets_bad_inputs_are_bounded_and_counted() {
    let scanner = Scanner::default();
    for e in expected().iter().filter(|e| e.container == "bad") {
        let data = std::fs::read(root().join("corpus").join(&e.path)).unwrap();
        let started = Instant::now();
        let r = scanner.scan(&data, e.path.rsplit('/').next());
        assert!(started.elapsed() < Duration::from_secs(20), "{}", e.path);
        assert!(r.expanded <= scanner.limits.max_expanded, "{}", e.path);
        let counted = r.limits_hit + r.errors;
        match e.path.as_str() {
            "bad/bomb.zip" | "bad/bomb.gz" => {
                assert!(r.limits_hit > 0, "{}", e.path);
                assert!(r.expanded < 64 << 20, "{}: {}", e.path, r.expanded);
            }
            "bad/deep.zip" => assert!(r.limits_hit > 0 && r.verdict.is_none(), "{}", e.path),
            "bad/encrypted.docx" | "bad/garbage.zip" | "bad/bad-flate.pdf" => {
                assert!(r.errors > 0, "{}: {r:?}", e.path)
            }
            _ => {
                let _ = counted;
            }
        }
    }
}

#[test]
fn secrets_random_and_truncated_inputs_never_panic() {
    let scanner = Scanner::default();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for e in expected().iter().filter(|e| is_document(e)).take(120) {
        let data = std::fs::read(root().join("corpus").join(&e.path)).unwrap();
        for _ in 0..6 {
            let mut d = data.clone();
            let cut = (next() as usize) % (d.len() + 1);
            d.truncate(cut);
            for _ in 0..8 {
                if !d.is_empty() {
                    let i = (next() as usize) % d.len();
                    d[i] = next() as u8;
                }
            }
            let _ = scanner.scan(&d, None);
            canhgac_agent::fuzzing::documents(&d);
        }
    }
}

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_canhgac-agent"))
}

fn phrases() -> Vec<String> {
    let mut p: Vec<String> = std::fs::read_to_string(root().join("phrases.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    // the stamps themselves are document text too
    p.extend(["MẬT", "TỐI", "TUYỆT", "BÁO CÁO", "Hồng Lĩnh"].map(String::from));
    p
}

fn assert_private(what: &str, output: &str) {
    for p in phrases() {
        assert!(!output.contains(&p), "{what} contains document text `{p}`");
        assert!(!output.to_lowercase().contains(&p.to_lowercase()), "{what} contains `{p}` (any case)");
    }
}

#[test]
fn secrets_scan_command_reports_every_marked_file_privately() {
    let out = agent().arg("scan-secrets").arg(root().join("corpus")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_private("scan-secrets stdout", &stdout);
    assert_private("scan-secrets stderr", &stderr);
    let mut hits = std::collections::BTreeMap::new();
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["event_type"], "alert");
        assert_eq!(v["canhgac"]["detector"], "secret-marker");
        assert_eq!(v["alert"]["signature_id"], canhgac_agent::eve::sid::SECRET_MARKER);
        let s = &v["canhgac"]["secret"];
        for k in ["level", "encoding", "container", "sha256"] {
            assert!(s[k].is_string(), "{k} in {line}");
        }
        let path = PathBuf::from(v["file"]["path"].as_str().unwrap());
        let data = std::fs::read(&path).unwrap();
        use sha2::Digest as _;
        assert_eq!(s["sha256"].as_str().unwrap(), hex::encode(sha2::Sha256::digest(&data)));
        assert_eq!(v["file"]["size"].as_u64().unwrap(), data.len() as u64);
        assert!(v["file"]["owner"].as_str().is_some_and(|o| !o.is_empty()));
        let rel = path.strip_prefix(root().join("corpus")).unwrap().display().to_string();
        hits.insert(rel, s["level"].as_str().unwrap().to_string());
    }
    for e in expected().iter().filter(|e| is_document(e)) {
        assert_eq!(hits.get(&e.path), e.level.as_ref(), "{}", e.path);
    }
    for k in [
        "files=",
        "bytes=",
        "hits_mat=",
        "hits_toi_mat=",
        "hits_tuyet_mat=",
        "secret_scan_limits_hit=",
        "secret_scan_errors=",
        "elapsed=",
        "mb_per_sec=",
    ] {
        assert!(stderr.contains(k), "{k}: {stderr}");
    }
    let summary: Vec<&str> = stderr.lines().filter(|l| l.starts_with("files=")).collect();
    assert_eq!(summary.len(), 1, "{stderr}");
}

#[test]
fn secrets_scan_command_usage() {
    let out = agent().arg("scan-secrets").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = agent().args(["scan-secrets", "/nonexistent/canhgac"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // no markers: still 0, nothing on stdout
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "mật khẩu").unwrap();
    let out = agent().arg("scan-secrets").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}

#[test]
fn secrets_summary_counts_levels() {
    let scanner = Scanner::default();
    let mut sink = Vec::new();
    let s = cli::run(&scanner, &[root().join("corpus/text")], &mut sink).unwrap();
    assert_eq!(s.files, 36);
    assert_eq!(s.hits, [9, 9, 9]);
}

#[test]
fn secrets_captures_over_http_smtp_ftp_smb_and_tcp() {
    let mut failures = Vec::new();
    for e in expected().iter().filter(|e| e.path.starts_with("capture/")) {
        let pcap = root().join("corpus").join(&e.path);
        let out = agent().arg("analyze").arg("--pcap").arg(&pcap).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", e.path);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_private(&e.path, &stdout);
        assert_private(&e.path, &stderr);
        let hits: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["canhgac"]["detector"] == "secret-marker")
            .collect();
        let got: Vec<(String, String)> = hits
            .iter()
            .map(|v| {
                (
                    v["canhgac"]["secret"]["level"].as_str().unwrap().to_string(),
                    v["canhgac"]["channel"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        // the highest level among the flow's objects, all on the expected channel
        let rank = |l: &str| ["mat", "toi-mat", "tuyet-mat"].iter().position(|x| *x == l);
        let top = got.iter().max_by_key(|(l, _)| rank(l)).map(|(l, _)| l.clone());
        let channels_ok = got.iter().all(|(_, c)| *c == e.container);
        if top != e.level || !channels_ok {
            failures.push(format!("{}: got {got:?}, want {:?} over {}", e.path, e.level, e.container));
        }
        for v in &hits {
            assert!(v["src_ip"].is_string() && v["dest_port"].is_u64(), "{v}");
            // the server (203.0.113.10) is outside, the client (10.20.0.5) inside
            assert_eq!(v["canhgac"]["outside"], v["direction"] == "to_server", "{v}");
            assert!(v["canhgac"]["secret"]["sha256"].as_str().is_some_and(|s| s.len() == 64));
        }
        assert!(stderr.contains("secret_scan_objects="), "{stderr}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn secrets_http_upload_hash_is_the_uploaded_file() {
    let pcap = root().join("corpus/capture/http-upload-docx.pcap");
    let out = agent().arg("analyze").arg("--pcap").arg(&pcap).output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let file = std::fs::read(root().join("corpus/docx/tuyet-mat.body.docx")).unwrap();
    use sha2::Digest as _;
    assert_eq!(v["canhgac"]["secret"]["sha256"].as_str().unwrap(), hex::encode(sha2::Sha256::digest(&file)));
    assert_eq!(v["canhgac"]["object_size"].as_u64().unwrap(), file.len() as u64);
    assert_eq!(v["direction"], "to_server");
}

/// The collector's category data (collector/data/incident_categories.toml)
/// opens a `state_secret_exposure` incident for these alerts: the detector
/// maps to it before any other rule could, the severity is high enough to
/// open one, and the EVE category is not an informational one.
#[test]
fn secrets_alerts_open_state_secret_incidents_in_the_collector_data() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../collector/data/incident_categories.toml");
    let data: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let maps = data["map"].as_array().unwrap();
    let first = maps
        .iter()
        .find(|m| m.get("detector").and_then(|d| d.as_str()) == Some(canhgac_agent::secrets::alert::DETECTOR))
        .expect("a map rule for secret-marker");
    assert_eq!(first["category"].as_str(), Some("state_secret_exposure"));
    // no earlier rule without a detector key could catch it first
    let pos = maps.iter().position(|m| std::ptr::eq(m, first)).unwrap();
    assert!(maps[..pos].iter().all(|m| m.get("detector").is_some()));
    let cat = data["category"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"].as_str() == Some("state_secret_exposure"))
        .unwrap();
    assert_ne!(cat.get("creates_incident").and_then(|v| v.as_bool()), Some(false));
    let opening = &data["opening"];
    assert!(
        u64::from(canhgac_agent::secrets::alert::SEVERITY)
            <= opening["max_severity"].as_integer().unwrap() as u64
    );
    let informational = opening["informational_eve_categories"].as_array().unwrap();
    assert!(!informational.iter().any(|c| c.as_str() == Some(canhgac_agent::secrets::alert::CATEGORY)));
}

#[test]
fn secrets_smb2_file_put_together_from_out_of_order_writes() {
    let pcap = root().join("corpus/capture/smb2-write-read.pcap");
    let out = agent().arg("analyze").arg("--pcap").arg(&pcap).output().unwrap();
    let hits: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    use sha2::Digest as _;
    let sha = |rel: &str| hex::encode(sha2::Sha256::digest(std::fs::read(root().join(rel)).unwrap()));
    let written = hits.iter().find(|v| v["direction"] == "to_server").expect("the written file");
    assert_eq!(
        written["canhgac"]["secret"]["sha256"].as_str().unwrap(),
        sha("corpus/docx/toi-mat.body.docx")
    );
    assert_eq!(written["canhgac"]["secret"]["level"], "toi-mat");
    let read = hits.iter().find(|v| v["direction"] == "to_client").expect("the file read");
    assert_eq!(read["canhgac"]["secret"]["sha256"].as_str().unwrap(), sha("corpus/pdf/mat.tcvn3.pdf"));
    assert_eq!(read["canhgac"]["secret"]["container"], "pdf");
}

/// One alert a real capture must raise (tests/secrets/captures/expected.tsv,
/// written by tests/secrets/_gen/capture.py with real clients and servers).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CaptureHit {
    level: String,
    channel: String,
    direction: String,
    sha256: String,
    outside: bool,
}

#[test]
fn secrets_real_captures_of_curl_smtplib_ftplib_and_smbclient() {
    let dir = root().join("captures");
    let text = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    // pcap -> (channel, expected hits); a level of `-` expects none
    let mut want: std::collections::BTreeMap<String, (String, Vec<CaptureHit>)> = Default::default();
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f.len(), 7, "{l}");
        let entry = want.entry(f[0].to_string()).or_insert_with(|| (f[2].to_string(), Vec::new()));
        if f[1] != "-" {
            entry.1.push(CaptureHit {
                level: f[1].to_string(),
                channel: f[2].to_string(),
                direction: f[3].to_string(),
                sha256: f[4].to_string(),
                outside: f[5] == "true",
            });
        }
    }
    // every committed capture is checked, and each protocol carries each
    // level and a hard negative
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap"))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, want.keys().cloned().collect::<Vec<_>>());
    for channel in ["http", "smtp", "ftp-data", "smb"] {
        let of: Vec<&(String, Vec<CaptureHit>)> = want.values().filter(|(c, _)| c == channel).collect();
        for level in ["mat", "toi-mat", "tuyet-mat"] {
            assert!(of.iter().any(|(_, h)| h.iter().any(|h| h.level == level)), "{channel} {level}");
        }
        assert!(of.iter().any(|(_, h)| h.is_empty()), "{channel}: a hard negative");
    }
    let mut failures = Vec::new();
    for (pcap, (_, expected)) in &want {
        let out = agent().arg("analyze").arg("--pcap").arg(dir.join(pcap)).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(0), "{pcap}: {stderr}");
        assert_private(pcap, &stdout);
        assert_private(pcap, &stderr);
        let mut got: Vec<CaptureHit> = stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["canhgac"]["detector"] == "secret-marker")
            .map(|v| CaptureHit {
                level: v["canhgac"]["secret"]["level"].as_str().unwrap().to_string(),
                channel: v["canhgac"]["channel"].as_str().unwrap().to_string(),
                direction: v["direction"].as_str().unwrap().to_string(),
                sha256: v["canhgac"]["secret"]["sha256"].as_str().unwrap().to_string(),
                outside: v["canhgac"]["outside"].as_bool().unwrap(),
            })
            .collect();
        got.sort();
        let mut expected = expected.clone();
        expected.sort();
        if got != expected {
            failures.push(format!("{pcap}:\n  got  {got:?}\n  want {expected:?}"));
        }
        assert!(stderr.contains("secret_scan_errors=0"), "{pcap}: {stderr}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
