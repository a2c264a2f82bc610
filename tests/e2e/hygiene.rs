//! Rules about the build itself.

use canhgac_tests::workspace;

/// One crypto provider (ring), no system OpenSSL, no unmaintained PEM crate.
#[test]
fn lockfile_has_a_single_crypto_provider() {
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).unwrap();
    for banned in ["aws-lc-rs", "aws-lc-sys", "openssl-sys", "rustls-pemfile"] {
        assert!(!lock.contains(&format!("name = \"{banned}\"")), "{banned} is in Cargo.lock");
    }
    assert!(lock.contains("name = \"ring\""));
}

/// The README's test command is what CI runs.
#[test]
fn ci_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(workspace().join(".ci/run")).unwrap();
    let command = "cargo test --workspace --locked";
    assert!(readme.contains(command), "README must give `{command}`");
    assert!(ci.lines().any(|l| l.trim() == command), ".ci/run must run `{command}`");
}
