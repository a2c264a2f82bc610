//! The agent binary's command-line contract (no collector needed).

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_canhgac-agent"))
}

#[test]
fn run_without_enrollment_exits_2_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent().args(["run", "--pcap", "x.pcap", "--state-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("not enrolled") && e.contains("canhgac-agent enroll"), "{e}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    for args in [
        vec!["run", "--state-dir", state, "--interface", "lo", "--pcap", "a.pcap"],
        vec!["run", "--state-dir", state, "--interface", "lo", "--exit-when-drained"],
        vec!["run", "--pcap", "a.pcap"],
        vec!["run", "--state-dir", state],
    ] {
        let out = agent().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn enroll_rejects_a_malformed_pin_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent()
        .args([
            "enroll",
            "--collector",
            "https://127.0.0.1:1",
            "--token",
            "t",
            "--ca-pin",
            "xyz",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid CA pin"));
}

#[test]
fn enroll_reports_an_unreachable_collector() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = agent()
        .args([
            "enroll",
            "--collector",
            &format!("https://127.0.0.1:{port}"),
            "--token",
            "t",
            "--ca-pin",
            &"ab".repeat(32),
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("cannot connect"), "{e}");
    assert!(!dir.path().join("identity.toml").exists());
}
