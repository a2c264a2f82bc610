//! Host sensor acceptance on real logs, through `canhgac-agent analyze --log`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `../shared/corpus` next to the checkout; the test fails when it is
/// missing (an acceptance test that silently skips proves nothing).
fn corpus() -> PathBuf {
    let candidates = [workspace().join("../shared/corpus"), workspace().join("../../shared/corpus")];
    candidates.iter().find(|p| p.is_dir()).cloned().unwrap_or_else(|| {
        panic!(
            "the labelled corpus is missing: expected shared/corpus next to the checkout ({}); \
             it holds the fail2ban logs (GPL, read in place, never copied)",
            candidates[0].display()
        )
    })
}

fn analyze(args: &[&str], log: &Path) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canhgac-agent"))
        .arg("analyze")
        .arg("--log")
        .arg(log)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "analyze failed: {stderr}");
    let records =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (records, stderr)
}

/// A labelled line: 1-based line number, byte offset, label, text.
struct Labelled {
    line: usize,
    offset: u64,
    label: Value,
    text: String,
}

fn labelled(path: &Path) -> Vec<Labelled> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut pending: Option<Value> = None;
    let mut offset = 0u64;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let l = line.trim_end_matches(['\n', '\r']);
        if let Some(json) = l.strip_prefix("# failJSON:") {
            pending =
                Some(serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("line {}: {e}", i + 1)));
        } else if !l.starts_with('#')
            && !l.trim().is_empty()
            && let Some(label) = pending.take()
        {
            out.push(Labelled { line: i + 1, offset, label, text: l.to_string() });
        }
        offset += line.len() as u64;
    }
    out
}

/// Acceptance 1: on each labelled fail2ban sshd log, every line labelled
/// `"match": true` yields an `auth` failure event naming the labelled host,
/// and no line labelled `"match": false` yields one. Every label is
/// checked, constrained ones included: the parser reads the log once, in
/// order, as the agent does.
#[test]
#[ignore = "reads fail2ban's GPL logs in ../shared/corpus: run tests/acceptance/corpus.sh"]
fn acceptance_fail2ban_labelled_sshd_logs() {
    let dir = corpus().join("fail2ban/fail2ban/tests/files/logs");
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for name in ["sshd", "sshd-journal"] {
        let path = dir.join(name);
        assert!(path.is_file(), "{} is missing", path.display());
        let labels = labelled(&path);
        let (records, summary) = analyze(&["--eve-types", "auth"], &path);
        // failure events by the offset of the line they come from
        let mut by_offset: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
        for r in &records {
            if r["event_type"] == "auth" && r["auth"]["outcome"] == "failure" {
                by_offset.entry(r["canhgac"]["log_offset"].as_u64().unwrap()).or_default().push(r);
            }
        }
        let (mut t_ok, mut t_all, mut f_ok, mut f_all) = (0, 0, 0, 0);
        for l in &labels {
            let events = by_offset.get(&l.offset).cloned().unwrap_or_default();
            if l.label["match"] == true {
                t_all += 1;
                let host = ["host", "ip4", "ip6"].iter().find_map(|k| l.label[*k].as_str());
                let ok = match host {
                    Some(h) => events.iter().any(|e| e["auth"]["src_ip"] == h || e["auth"]["src_host"] == h),
                    None => !events.is_empty(),
                };
                if ok {
                    t_ok += 1;
                } else {
                    failures.push(format!(
                        "{name}:{}: expected a failure from {host:?}, got {events:?}\n  {}",
                        l.line, l.text
                    ));
                }
            } else {
                f_all += 1;
                if events.is_empty() {
                    f_ok += 1;
                } else {
                    failures.push(format!(
                        "{name}:{}: expected no failure, got {events:?}\n  {}",
                        l.line, l.text
                    ));
                }
            }
        }
        report.push(format!(
            "{name}: match=true {t_ok}/{t_all} with the labelled host, match=false {f_ok}/{f_all} without a failure ({summary})",
            summary = summary.trim()
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} labelled lines wrong:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        report.join("\n")
    );
}

/// Acceptance 2: on the elastic auth.log every source with 5 or more
/// failed passwords within 10 minutes (counted here independently, from
/// the `Failed password` lines and rsyslog's `message repeated N times`)
/// is reported by `auth-bruteforce`, and the administrator's public-key
/// logins from 85.245.107.41 are never flagged.
#[test]
fn acceptance_elastic_auth_log_bruteforce() {
    let path = workspace().join("tests/fixtures/host/elastic-auth.log");
    // independent count: seconds since the start of the year, per source
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days_before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let mut failures: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        if !line.contains(" sshd[") {
            continue;
        }
        let (count, rest) = if let Some((_, r)) = line.split_once("message repeated ") {
            let (n, r) = r.split_once(" times: [ ").unwrap();
            (n.parse::<usize>().unwrap(), r)
        } else {
            (1, line)
        };
        let Some((_, after)) = rest.split_once("Failed password for ") else { continue };
        let (_, addr) = after.rsplit_once(" from ").unwrap();
        let addr = addr.split(' ').next().unwrap().to_string();
        let month = months.iter().position(|m| line.starts_with(m)).unwrap();
        let day: i64 = line[4..6].trim().parse().unwrap();
        let hms: Vec<i64> = line[7..15].split(':').map(|x| x.parse().unwrap()).collect();
        let t = ((days_before[month] + day) * 24 + hms[0]) * 3600 + hms[1] * 60 + hms[2];
        for _ in 0..count {
            failures.entry(addr.clone()).or_default().push(t);
        }
    }
    let mut expected = BTreeSet::new();
    for (addr, mut ts) in failures {
        ts.sort();
        let mut j = 0;
        for i in 0..ts.len() {
            while ts[i] - ts[j] > 600 {
                j += 1;
            }
            if i - j + 1 >= 5 {
                expected.insert(addr.clone());
                break;
            }
        }
    }
    assert!(expected.len() > 50, "the fixture has many guessing sources: {expected:?}");
    let (records, summary) = analyze(&[], &path);
    let reported: BTreeSet<String> = records
        .iter()
        .filter(|r| r["canhgac"]["detector"] == "auth-bruteforce")
        .map(|r| r["src_ip"].as_str().unwrap().to_string())
        .collect();
    let missed: Vec<_> = expected.difference(&reported).collect();
    assert!(missed.is_empty(), "sources with 5+ failures in 10 minutes not reported: {missed:?}\n{summary}");
    let admin: Vec<_> = records.iter().filter(|r| r["src_ip"] == "85.245.107.41").collect();
    assert!(admin.is_empty(), "the administrator was flagged: {admin:?}");
    // one alert per source and episode, not per line
    let bf = records.iter().filter(|r| r["canhgac"]["detector"] == "auth-bruteforce").count();
    assert!(bf < expected.len() * 4, "{bf} brute-force alerts for {} sources", expected.len());
    eprintln!(
        "elastic auth.log: {} sources with 5+ failures in 10 minutes expected, {} reported by auth-bruteforce \
         ({bf} alerts), 0 alerts for 85.245.107.41; {}",
        expected.len(),
        reported.len(),
        summary.trim()
    );
}

/// Issue 10: a RHEL/CentOS 4 style log (`sshd(pam_unix)[PID]:
/// authentication failure; ... rhost=HOST`, fixture written for canhgac in
/// that format): every authentication failure line that names a remote
/// host becomes an `auth` failure event naming it (an address as `src_ip`,
/// a name as `src_host`), both guessing sources are reported by
/// `auth-bruteforce` and the isolated typos are not, and the two lines no
/// parser of ours knows are counted in `unparsed_lines`.
#[test]
fn old_pam_log_failures_and_bruteforce() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rhel4-messages.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut expected = Vec::new();
    let mut offset = 0u64;
    for line in text.split_inclusive('\n') {
        if line.contains("authentication failure;")
            && let Some((_, rhost)) = line.split_once(" rhost=")
            && let Some(host) = rhost.split([' ', '\n']).next().filter(|h| !h.is_empty())
        {
            expected.push((offset, host.to_string()));
        }
        offset += line.len() as u64;
    }
    assert_eq!(expected.len(), 22);
    let (records, summary) = analyze(&["--eve-types", "auth,alert"], &path);
    for (offset, host) in &expected {
        let found = records.iter().any(|r| {
            r["event_type"] == "auth"
                && r["auth"]["outcome"] == "failure"
                && r["canhgac"]["log_offset"] == *offset
                && (r["src_ip"] == host.as_str() || r["auth"]["src_host"] == host.as_str())
        });
        assert!(found, "no failure event for the line at {offset} ({host})\n{summary}");
    }
    let bruteforce: BTreeSet<String> = records
        .iter()
        .filter(|r| r["canhgac"]["detector"] == "auth-bruteforce")
        .map(|r| r["src_ip"].as_str().or(r["canhgac"]["src_host"].as_str()).unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        bruteforce,
        BTreeSet::from(["218.188.2.4".to_string(), "220-135-151-1.hinet-ip.hinet.net".to_string()]),
        "{summary}"
    );
    assert!(summary.contains("unparsed_lines=2"), "{summary}");
}

/// Issue 13 acceptance on the access logs of a real nginx attacked by real
/// tools (tests/weblogs/nginx, made by tests/weblogs/_gen/generate.sh):
/// every attacking client is reported by exactly the detectors
/// `expected.tsv` names, the browsing client by none; the combined and the
/// JSON log of the same requests give the same answer.
#[test]
fn web_logs_of_real_attack_tools() {
    let dir = workspace().join("tests/weblogs/nginx");
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("expected.tsv")).unwrap().lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (ip, dets) = line.split_once('\t').unwrap();
        let set = dets.split(',').filter(|d| *d != "-").map(String::from).collect();
        expected.insert(ip.to_string(), set);
    }
    assert_eq!(expected.len(), 8);
    let mut answers = Vec::new();
    for file in ["access.log.gz", "access.json.log.gz"] {
        let (records, summary) = analyze(&[], &dir.join(file));
        assert!(summary.contains("web_unparsed=0"), "{file}: {summary}");
        let mut got: BTreeMap<String, BTreeSet<String>> =
            expected.keys().map(|k| (k.clone(), BTreeSet::new())).collect();
        let mut per_key: BTreeMap<(String, String), usize> = BTreeMap::new();
        for r in &records {
            assert_eq!(r["event_type"], "alert");
            assert_eq!(r["canhgac"]["source"], "web", "{r}");
            let ip = r["src_ip"].as_str().unwrap().to_string();
            let det = r["canhgac"]["detector"].as_str().unwrap().to_string();
            *per_key.entry((ip.clone(), det.clone())).or_default() += 1;
            got.entry(ip).or_default().insert(det);
        }
        assert_eq!(got, expected, "{file}: {summary}");
        // one alert per source and detector (one episode each)
        assert!(per_key.values().all(|n| *n == 1), "{file}: {per_key:?}");
        // the counts are the episode's
        let dirb = records
            .iter()
            .find(|r| r["src_ip"] == "10.77.0.12" && r["canhgac"]["detector"] == "web-bruteforce")
            .unwrap();
        assert!(dirb["canhgac"]["requests"].as_u64().unwrap() > 4000, "{dirb}");
        assert_eq!(dirb["canhgac"]["samples"].as_array().unwrap().len(), 10);
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1]);
}
