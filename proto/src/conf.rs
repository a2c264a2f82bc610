//! Two-stage configuration loading shared by agent and collector.
//!
//! Stage one parses TOML into a serde struct with `deny_unknown_fields`;
//! stage two validates values into real types. Both stages report errors as
//! `FILE:LINE:COLUMN: field `a.b`: what is wrong`, so that an administrator
//! can fix the file without guessing. Values that need validation after
//! parsing are kept as [`toml::Spanned`] so their position is known.

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

pub use toml::Spanned;

/// A configuration problem with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not tied to a position.
    pub line: usize,
    pub column: usize,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text of a configuration file, kept to locate errors.
pub struct Source {
    pub file: PathBuf,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        Ok(Source { file: path.to_path_buf(), text })
    }

    /// Stage one: TOML into `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let message = e.message().trim().to_string();
            match e.span() {
                Some(span) => self.error_at(span, message),
                None => self.error(None, message),
            }
        })
    }

    /// An error at a byte span of the file; the field is read off the text.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            field: self.field_at(start),
            message: message.into(),
        }
    }

    /// An error not tied to a position (for example a missing section).
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: 0,
            column: 0,
            field: field.map(String::from),
            message: message.into(),
        }
    }

    /// `table.key` of the assignment on the line holding `offset`, if any.
    fn field_at(&self, offset: usize) -> Option<String> {
        let line_start = self.text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = self.text[offset..].find('\n').map(|i| offset + i).unwrap_or(self.text.len());
        let line = &self.text[line_start..line_end];
        let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string())?;
        if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
            return None;
        }
        let table = self.text[..line_start].lines().rev().find_map(|l| {
            let l = l.trim();
            if l.starts_with('[') && !l.starts_with("[[") {
                l.strip_prefix('[')?.strip_suffix(']').map(|t| t.trim().to_string())
            } else if l.starts_with("[[") {
                l.strip_prefix("[[")?.strip_suffix("]]").map(|t| t.trim().to_string())
            } else {
                None
            }
        });
        Some(match table {
            Some(t) => format!("{t}.{key}"),
            None => key,
        })
    }

    /// A duration such as `30s`, `5m`, `24h`, `30d`.
    pub fn duration(&self, v: &Spanned<String>) -> Result<Duration, ConfigError> {
        humantime::parse_duration(v.get_ref())
            .map_err(|e| self.error_at(v.span(), format!("invalid duration `{}`: {e}", v.get_ref())))
    }

    /// A size such as `512MiB`, `1GB`, `4096`.
    pub fn size(&self, v: &Spanned<String>) -> Result<u64, ConfigError> {
        parse_size(v.get_ref())
            .map_err(|e| self.error_at(v.span(), format!("invalid size `{}`: {e}", v.get_ref())))
    }
}

/// Parses `512MiB`, `1GB`, `4096` into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim().parse::<bytesize::ByteSize>().map(|b| b.as_u64())
}

/// Parses a duration for command-line flags.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[allow(dead_code)]
        version: u32,
        #[serde(default)]
        spool: Spool,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spool {
        max_bytes: Option<Spanned<String>>,
        #[allow(dead_code)]
        batch: Option<u32>,
    }

    fn src(text: &str) -> Source {
        Source { file: "agent.toml".into(), text: text.into() }
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let s = src("version = 1\n\n[spool]\nmax_bytes = \"1GiB\"\nmax_byte = 3\n");
        let err = s.parse::<Conf>().unwrap_err();
        assert_eq!((err.line, err.column), (5, 1));
        assert_eq!(err.field.as_deref(), Some("spool.max_byte"));
        let text = err.to_string();
        assert!(
            text.starts_with("agent.toml:5:1: field `spool.max_byte`: unknown field `max_byte`"),
            "{text}"
        );
    }

    #[test]
    fn wrong_type_names_field() {
        let err = src("version = 1\n[spool]\nbatch = \"x\"\n").parse::<Conf>().unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.field.as_deref(), Some("spool.batch"));
    }

    #[test]
    fn stage_two_errors_point_at_the_value() {
        let s = src("version = 1\n[spool]\nmax_bytes = \"lots\"\n");
        let conf: Conf = s.parse().unwrap();
        let err = s.size(conf.spool.max_bytes.as_ref().unwrap()).unwrap_err();
        assert_eq!((err.line, err.column), (3, 13));
        assert_eq!(err.field.as_deref(), Some("spool.max_bytes"));
        assert!(err.message.contains("invalid size `lots`"));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
    }
}

/// `[log]`, the same in both programs.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<Spanned<String>>,
}

/// `[metrics]`, the same in both programs.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

impl Source {
    /// `[log] format`: text (the default) or json.
    pub fn log_format(&self, raw: &RawLog) -> Result<crate::files::LogFormat, ConfigError> {
        match &raw.format {
            None => Ok(crate::files::LogFormat::Text),
            Some(f) => crate::files::LogFormat::parse(f.get_ref())
                .ok_or_else(|| self.error_at(f.span(), format!("`{}` is not text or json", f.get_ref()))),
        }
    }

    /// `[metrics] listen`: `None` without a `[metrics]` section, `default`
    /// when the section names no address.
    pub fn metrics_listen(
        &self,
        raw: Option<&RawMetrics>,
        default: std::net::SocketAddr,
    ) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let Some(m) = raw else { return Ok(None) };
        match &m.listen {
            None => Ok(Some(default)),
            Some(l) => l.get_ref().parse().map(Some).map_err(|_| {
                self.error_at(l.span(), format!("invalid metrics listen address `{}` (IP:PORT)", l.get_ref()))
            }),
        }
    }
}
