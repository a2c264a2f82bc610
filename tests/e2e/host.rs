//! The host sensor end to end: a real agent following real files (and a
//! real sshd in a network namespace), alerts asserted at the collector.

use std::{
    io::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use canhgac_tests::wait_for;
use serde_json::Value;

use crate::setup;

pub(crate) fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn host_config(dir: &Path, body: &str) -> String {
    let p = dir.join("agent.toml");
    std::fs::write(&p, format!("version = 1\n[host]\ntimezone = \"UTC\"\n{body}\n")).unwrap();
    p.display().to_string()
}

/// One privileged-account-change alert per line: `useradd` adding a
/// distinct user to `sudo`.
fn account_line(i: usize) -> String {
    format!("Nov 23 10:00:00 web01 useradd[{}]: add 'user{i}' to group 'sudo'\n", 1000 + i)
}

fn alerted_users(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .filter(|a| a["canhgac"]["detector"] == "privileged-account-change")
        .filter_map(|a| a["canhgac"]["user"].as_str().map(String::from))
        .collect()
}

/// Rename, copytruncate and gzip rotations, with the agent SIGKILLed and
/// restarted in between: every line is reported exactly once.
#[test]
fn auth_log_rotation_with_sigkill_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("auth.log");
    let config = host_config(
        tmp.path(),
        &format!(
            "[host.auth]\nfiles = [\"{}\"]\njournal = \"off\"\nstart_at = \"start\"\n[host.fim]\nenabled = false\n\
             [host.listeners]\nenabled = false\n[host.processes]\nenabled = false\n[host.secrets]\nenabled = false\n",
            log.display()
        ),
    );
    let mut n = 0;
    let mut write = |count: usize| {
        let mut text = String::new();
        for _ in 0..count {
            text.push_str(&account_line(n));
            n += 1;
        }
        append(&log, &text);
    };
    rotations_with_kills(&mut agent, &config, &log, &mut write);
    let total = n;
    wait_for("every account line reported", Duration::from_secs(60), || {
        let a = c.alerts();
        (alerted_users(&a).len() >= total).then_some(a)
    });
    std::thread::sleep(Duration::from_secs(2));
    let alerts = c.alerts();
    let users = alerted_users(&alerts);
    let mut counts = std::collections::BTreeMap::new();
    for u in &users {
        *counts.entry(u.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = (0..total).filter(|i| !counts.contains_key(&format!("user{i}"))).collect();
    assert!(twice.is_empty() && missing.is_empty(), "read twice: {twice:?}; lost: {missing:?}");
    assert_eq!(users.len(), total);
    let _ = &alerts;
    agent.kill();
}

/// The rotation scenario of the log-follower tests, `write(n)` appending n
/// lines to `log`: lines before the start, a rename rotation while
/// running, SIGKILL; while down more lines, a second rename and gzip of
/// the rotated file; restart; copytruncate while running; SIGKILL, lines,
/// restart.
pub(crate) fn rotations_with_kills(
    agent: &mut canhgac_tests::Agent,
    config: &str,
    log: &Path,
    write: &mut dyn FnMut(usize),
) {
    let logs = log.parent().unwrap();
    let name = log.file_name().unwrap().to_str().unwrap();
    let rotated = |n: u32| logs.join(format!("{name}.{n}"));
    write(200);
    agent.start(&["--config", config]);
    write(100);
    std::thread::sleep(Duration::from_millis(700));
    // rename rotation while running, then SIGKILL
    std::fs::rename(log, rotated(1)).unwrap();
    write(150);
    std::thread::sleep(Duration::from_millis(150));
    agent.kill();
    // while down: more lines, a rename rotation and gzip of the old file
    write(100);
    std::fs::rename(log, rotated(2)).unwrap();
    let gz = logs.join(format!("{name}.2.gz"));
    let mut enc = flate2_writer(&gz);
    enc.write_all(&std::fs::read(rotated(2)).unwrap()).unwrap();
    drop(enc);
    std::fs::remove_file(rotated(2)).unwrap();
    write(100);
    agent.restart();
    std::thread::sleep(Duration::from_millis(800));
    // copytruncate while running
    write(100);
    std::fs::copy(log, rotated(3)).unwrap();
    std::fs::write(log, "").unwrap();
    write(100);
    std::thread::sleep(Duration::from_millis(300));
    agent.kill();
    write(50);
    agent.restart();
}

/// A tiny gzip writer through the system `gzip` (the tests crate has no
/// compression dependency).
fn flate2_writer(path: &Path) -> impl std::io::Write {
    struct Gz(std::process::Child);
    impl std::io::Write for Gz {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.stdin.as_mut().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Drop for Gz {
        fn drop(&mut self) {
            drop(self.0.stdin.take());
            self.0.wait().unwrap();
        }
    }
    let out = std::fs::File::create(path).unwrap();
    Gz(Command::new("gzip").arg("-c").stdin(std::process::Stdio::piped()).stdout(out).spawn().unwrap())
}

/// Acceptance 4: replacing a watched site's index.html with a defacement
/// page raises `defacement` within 5 seconds; a deployment inside an
/// accepted maintenance window raises nothing.
#[test]
fn web_defacement_within_5s_and_maintenance_window_is_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let www = tmp.path().join("www");
    std::fs::create_dir_all(www.join("tin-tuc")).unwrap();
    let page = |title: &str, body: &str| {
        format!(
            "<html><head><title>{title}</title><script src=\"/js/site.js\"></script></head><body><h1>{title}</h1>\
             <p>{body}</p></body></html>"
        )
    };
    std::fs::write(
        www.join("index.html"),
        page("Cổng thông tin điện tử Sở Tài chính", "Thông báo lịch tiếp công dân, thủ tục hành chính và văn bản chỉ đạo điều hành của Sở trong tháng này."),
    )
    .unwrap();
    for i in 0..20 {
        std::fs::write(www.join(format!("tin-tuc/{i}.html")), page("Tin tức", &format!("Bài viết số {i}")))
            .unwrap();
    }
    let config = host_config(
        tmp.path(),
        &format!(
            "[host.auth]\nenabled = false\n[host.fim]\npaths = []\ncoalesce = \"300ms\"\n[host.web]\nroots = [\"{}\"]\n\
             [host.listeners]\nenabled = false\n[host.processes]\nenabled = false\n[host.secrets]\nenabled = false\n",
            www.display()
        ),
    );
    agent.start(&["--config", config.as_str()]);
    wait_for("the baseline", Duration::from_secs(30), || {
        agent.logs().contains("baseline ready").then_some(())
    });
    // a deployment inside a maintenance window: nothing
    let out = Command::new(canhgac_tests::bin("canhgac-agent"))
        .args(["fim", "accept", "--for", "10m", "--state-dir"])
        .arg(&agent.state_dir)
        .arg(&www)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(
        www.join("index.html"),
        page(
            "Cổng thông tin điện tử Sở Tài chính - giao diện mới",
            "Trang chủ mới: dịch vụ công trực tuyến mức độ 4, tra cứu hồ sơ, hỏi đáp.",
        ),
    )
    .unwrap();
    for i in 20..60 {
        std::fs::write(www.join(format!("tin-tuc/{i}.html")), page("Tin tức", &format!("Bài viết số {i}")))
            .unwrap();
    }
    std::fs::remove_file(www.join("tin-tuc/0.html")).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let host_alerts = |a: &[Value]| -> Vec<Value> {
        a.iter()
            .filter(|v| matches!(v["canhgac"]["detector"].as_str(), Some("fim" | "defacement" | "webshell")))
            .cloned()
            .collect()
    };
    assert!(
        host_alerts(&c.alerts()).is_empty(),
        "alerts during the maintenance window: {:?}",
        host_alerts(&c.alerts())
    );
    let out = Command::new(canhgac_tests::bin("canhgac-agent"))
        .args(["fim", "accept", "--clear", "--state-dir"])
        .arg(&agent.state_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(1500));
    // the defacement
    let hacked = "<html><head><title>HACKED</title></head><body style=\"background:black;color:red\">\
        <h1>Hacked by Anonymous Ghost Team</h1><p>Your security is low. Greetz to all crew</p></body></html>";
    let started = Instant::now();
    std::fs::write(www.join("index.html"), hacked).unwrap();
    let alert = wait_for("a defacement alert", Duration::from_secs(30), || {
        c.alerts().into_iter().find(|a| a["canhgac"]["detector"] == "defacement")
    });
    let took = started.elapsed();
    assert!(took <= Duration::from_secs(5), "defacement reported after {took:?}");
    assert_eq!(alert["alert"]["severity"], 1);
    assert!(alert["canhgac"]["path"].as_str().unwrap().ends_with("index.html"));
    eprintln!("defacement reported at the collector {:.2}s after the write", took.as_secs_f64());
    // a web shell dropped next to it
    std::fs::write(www.join("tin-tuc/.cache.php"), "<?php @eval($_POST['x']); ?>").unwrap();
    wait_for("a web-shell alert", Duration::from_secs(15), || {
        c.alerts().into_iter().find(|a| a["canhgac"]["detector"] == "webshell")
    });
    agent.kill();
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("bash").arg("-c").arg(cmd).output().unwrap()
}

fn must(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Acceptance 3: password guessing against a real OpenSSH server from
/// another network namespace raises `auth-bruteforce` within 10 seconds of
/// the fifth failure, and a successful login from the same source then
/// raises `auth-success-after-failures`. Installs openssh-server and
/// sshpass with apt-get when missing; needs root (CI runs as root).
#[test]
fn sshd_password_guessing_in_a_namespace() {
    assert!(
        canhgac_tests::is_root(),
        "this test runs sshd and creates network namespaces: run it as root (CI does)"
    );
    if sh("test -x /usr/sbin/sshd && command -v sshpass").status.code() != Some(0) {
        must(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server sshpass",
        );
    }
    must("mkdir -p /run/sshd && ssh-keygen -A >/dev/null");
    let id = std::process::id() % 10_000;
    let ns = format!("cgs{id}");
    let host_if = format!("cgsh{id}");
    let ns_if = format!("cgsn{id}");
    let octet = 1 + id % 250;
    let host_ip = format!("10.78.{octet}.1");
    let peer_ip = format!("10.78.{octet}.2");
    struct Cleanup(String, String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = sh(&format!(
                "ip link del {} 2>/dev/null; ip netns del {} 2>/dev/null; userdel -r {} 2>/dev/null",
                self.1, self.0, self.2
            ));
        }
    }
    let user = format!("cgt{id}");
    let _cleanup = Cleanup(ns.clone(), host_if.clone(), user.clone());
    must(&format!(
        "ip netns add {ns} && ip link add {host_if} type veth peer name {ns_if} && ip link set {ns_if} netns {ns} && \
         ip addr add {host_ip}/24 dev {host_if} && ip link set {host_if} up && \
         ip -n {ns} addr add {peer_ip}/24 dev {ns_if} && ip -n {ns} link set {ns_if} up && ip -n {ns} link set lo up"
    ));
    must(&format!("useradd -M -s /bin/sh {user} && echo '{user}:Right-Passw0rd' | chpasswd"));

    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("sshd.log");
    std::fs::write(&log, "").unwrap();
    let mut sshd = Command::new("/usr/sbin/sshd")
        .args(["-D", "-E"])
        .arg(&log)
        .args([
            "-p",
            "2222",
            "-o",
            &format!("ListenAddress={host_ip}"),
            "-o",
            "PasswordAuthentication=yes",
            "-o",
            "PidFile=none",
            "-o",
            "MaxStartups=100",
        ])
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sshd_guard = Kill(std::mem::replace(&mut sshd, Command::new("true").spawn().unwrap()));

    let (c, mut agent) = setup(tmp.path());
    let config = host_config(
        tmp.path(),
        &format!(
            "[host.auth]\nfiles = [\"{}\"]\njournal = \"off\"\n[host.fim]\nenabled = false\n\
             [host.listeners]\nenabled = false\n[host.processes]\nenabled = false\n[host.secrets]\nenabled = false\n",
            log.display()
        ),
    );
    agent.start(&["--config", config.as_str()]);
    wait_for("the agent to follow the log", Duration::from_secs(20), || {
        agent.logs().contains("following log").then_some(())
    });
    let ssh = |password: &str| {
        sh(&format!(
            "ip netns exec {ns} sshpass -p '{password}' ssh -p 2222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o PubkeyAuthentication=no -o PreferredAuthentications=password -o NumberOfPasswordPrompts=1 -o ConnectTimeout=5 \
             {user}@{host_ip} true"
        ))
    };
    let mut fifth = Instant::now();
    for i in 0..5 {
        let out = ssh(&format!("wrong-{i}"));
        assert!(!out.status.success());
        fifth = Instant::now();
    }
    let bf = wait_for("auth-bruteforce at the collector", Duration::from_secs(30), || {
        c.alerts().into_iter().find(|a| a["canhgac"]["detector"] == "auth-bruteforce")
    });
    let took = fifth.elapsed();
    assert!(took <= Duration::from_secs(10), "brute force reported {took:?} after the fifth failure");
    assert_eq!(bf["src_ip"], peer_ip.as_str(), "{bf}");
    assert!(bf["canhgac"]["users"].as_array().unwrap().iter().any(|u| u == user.as_str()), "{bf}");
    let out = ssh("Right-Passw0rd");
    assert!(out.status.success(), "the right password works: {}", String::from_utf8_lossy(&out.stderr));
    let saf = wait_for("auth-success-after-failures", Duration::from_secs(15), || {
        c.alerts().into_iter().find(|a| a["canhgac"]["detector"] == "auth-success-after-failures")
    });
    assert_eq!(saf["src_ip"], peer_ip.as_str());
    assert_eq!(saf["alert"]["severity"], 1);
    eprintln!("auth-bruteforce at the collector {:.2}s after the fifth failure", took.as_secs_f64());
    agent.kill();
}

/// A document stamped TUYỆT MẬT (TCVN3 text) copied into a watched shared
/// folder: the collector has the alert within seconds, with the file's
/// metadata and none of its text, and opens a state-secret incident.
#[test]
fn state_secret_file_reaches_the_collector_and_opens_an_incident() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let share = tmp.path().join("share");
    std::fs::create_dir_all(share.join("phong-hc")).unwrap();
    std::fs::write(
        share.join("phong-hc/thong-bao.txt"),
        "Thông báo lịch họp; mật khẩu wifi đổi hằng tháng.\n",
    )
    .unwrap();
    let config = host_config(
        tmp.path(),
        &format!(
            "[host.auth]\nenabled = false\n[host.fim]\nenabled = false\n[host.listeners]\nenabled = false\n\
             [host.processes]\nenabled = false\n[host.secrets]\npaths = [\"{}\"]\ncoalesce = \"300ms\"\nrate = \"64MiB\"\n",
            share.display()
        ),
    );
    agent.start(&["--config", config.as_str()]);
    wait_for("the first scan", Duration::from_secs(30), || {
        agent.logs().contains("state-secret scan: completed").then_some(())
    });
    // TCVN3 bytes of "TUYỆT MẬT" under an official header, and the body
    let doc: &[u8] = b"UBND TINH HA TINH\r\nS\xe8: 12/BC-UBND\r\nC\xe9NG HO\xb5 X\xb7 H\xe9I CH\xf1 NGH\xdcA VI\xd6T NAM\r\n\
        TUY\xd6T M\xcbT\r\nPh\xad\xacng \xb8n ph\xdfng th\xf1 Song Lam\r\n";
    let started = Instant::now();
    std::fs::write(share.join("phong-hc/bao-cao.txt"), doc).unwrap();
    let alert = wait_for("a secret-marker alert", Duration::from_secs(30), || {
        c.alerts().into_iter().find(|a| a["canhgac"]["detector"] == "secret-marker")
    });
    eprintln!(
        "state-secret file reported at the collector {:.2}s after the write",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(alert["canhgac"]["secret"]["level"], "tuyet-mat");
    assert_eq!(alert["canhgac"]["secret"]["encoding"], "tcvn3");
    assert!(alert["file"]["path"].as_str().unwrap().ends_with("phong-hc/bao-cao.txt"));
    assert_eq!(alert["file"]["size"].as_u64().unwrap(), doc.len() as u64);
    let all = c.alerts();
    assert_eq!(all.iter().filter(|a| a["canhgac"]["detector"] == "secret-marker").count(), 1, "{all:?}");
    let text = serde_json::to_string(&all).unwrap() + &agent.logs() + &c.logs();
    for phrase in ["Song Lam", "Ph\u{01b0}\u{01a1}ng", "TUY\u{1ec6}T", "M\u{1eac}T", "12/BC"] {
        assert!(!text.contains(phrase), "output contains `{phrase}`");
    }
    let incidents = wait_for("a state-secret incident", Duration::from_secs(30), || {
        let l: Vec<Value> = c
            .cli(&["incidents", "list", "--json"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        l.iter().any(|i| i["category"] == "state_secret_exposure").then_some(l)
    });
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    // coverage says the agency's host runs the scan and when it last completed
    let cov = wait_for("the secret scan in coverage", Duration::from_secs(30), || {
        c.cli(&["coverage", "--json"])
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["type"] == "agency" && v["secret_scan_hosts"] == 1)
    });
    assert!(cov["secret_scan_last_completed"].is_string(), "{cov}");
    agent.kill();
}
