//! Live capture on an interface with pnet (AF_PACKET; needs CAP_NET_RAW).

use std::time::Duration;

use pnet_datalink::{Channel, Config, DataLinkReceiver, NetworkInterface};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no interface named `{name}` (available: {available})")]
    NoSuchInterface { name: String, available: String },
    #[error(
        "cannot capture on `{name}`: permission denied; the agent needs the CAP_NET_RAW capability (run as root or `setcap cap_net_raw+ep` the binary)"
    )]
    Permission { name: String },
    #[error("cannot capture on `{name}`: {source}")]
    Io { name: String, source: std::io::Error },
    #[error("interface `{0}` does not deliver Ethernet frames")]
    Unsupported(String),
}

pub fn open(name: &str) -> Result<Box<dyn DataLinkReceiver>, LiveError> {
    let interfaces = pnet_datalink::interfaces();
    let Some(iface) = interfaces.iter().find(|i| i.name == name).cloned() else {
        let available =
            interfaces.iter().map(|i: &NetworkInterface| i.name.clone()).collect::<Vec<_>>().join(", ");
        return Err(LiveError::NoSuchInterface { name: name.to_string(), available });
    };
    let config = Config {
        read_timeout: Some(Duration::from_millis(100)),
        read_buffer_size: 1 << 16,
        ..Config::default()
    };
    match pnet_datalink::channel(&iface, config) {
        Ok(Channel::Ethernet(_tx, rx)) => Ok(rx),
        Ok(_) => Err(LiveError::Unsupported(name.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(LiveError::Permission { name: name.to_string() })
        }
        Err(source) => Err(LiveError::Io { name: name.to_string(), source }),
    }
}
