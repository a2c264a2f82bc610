//! Where a log message came from: its kind, the device that sent it over
//! syslog and the registry system it belongs to. Written into every EVE
//! record of the message as `canhgac.source`, `canhgac.sender` and
//! `canhgac.system`, so that the collector attributes the alert.

use std::net::IpAddr;

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOrigin {
    /// The log kind: `auth`, `web`, `firewall`, `windows`.
    pub kind: &'static str,
    /// The syslog sender's address (messages received over the network).
    pub sender: Option<IpAddr>,
    /// The registry system named for this source in the configuration.
    pub system: Option<u64>,
}

impl Default for LogOrigin {
    fn default() -> Self {
        LogOrigin { kind: "auth", sender: None, system: None }
    }
}

impl LogOrigin {
    pub fn of(kind: &'static str) -> LogOrigin {
        LogOrigin { kind, ..Default::default() }
    }

    /// Adds `source`, `sender` and `system` to a `canhgac` object.
    pub fn write(&self, obj: &mut Map<String, Value>) {
        obj.insert("source".into(), self.kind.into());
        if let Some(s) = self.sender {
            obj.insert("sender".into(), s.to_string().into());
        }
        if let Some(s) = self.system {
            obj.insert("system".into(), s.into());
        }
    }
}
