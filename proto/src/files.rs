//! Small file-system helpers shared by agent and collector.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

/// Writes a file atomically: a temporary file with `mode`, fsync, rename
/// over `path`, fsync of the directory. Readers see the old or the new
/// content, never a mix, whatever moment the process dies at.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Logging to stderr for the command-line programs: `RUST_LOG` or `info`,
/// colours only on a terminal.
pub fn init_logging() {
    init_logging_as(LogFormat::Text)
}

/// How the daemons write their log (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`
    /// with `message`), for log shippers.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Logging to stderr in `format`: `RUST_LOG` or `info`. A log line that
/// cannot be written (stderr on a full disk) is dropped, never a panic:
/// the subscriber's fallback would `eprintln!` to the same stderr, which
/// panics the task that logged.
pub fn init_logging_as(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .log_internal_errors(false)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .with_current_span(false)
            .log_internal_errors(false)
            .init(),
    }
}

/// The kind of a policy file from its name (`rules`, `settings` or
/// `ioc`), as `canhgac policy push` sends it and the collector checks it.
pub fn policy_file_kind(name: &str) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.pem");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!p.with_extension("tmp").exists());
    }
}
