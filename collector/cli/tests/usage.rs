//! The `canhgac` binary on bad usage: exit 2 and a message naming what is
//! wrong, before any network access. (Cargo also builds the binary for
//! these tests, which the end-to-end tests in `tests/` run.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn canhgac(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canhgac"))
        .args(args)
        .env_remove("CANHGAC_PROFILE")
        .env_remove("CANHGAC_COLLECTOR")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_usage_exits_2_naming_the_problem() {
    let (code, err) = canhgac(&["agency", "list"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no operator profile"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.profile");
    let (code, err) = canhgac(&["--profile", missing.to_str().unwrap(), "agency", "list"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nowhere.profile"), "{err}");
    let (code, err) = canhgac(&["incidents", "list", "--no-such-flag"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
}
