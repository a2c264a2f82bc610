//! Host inventory sent in `Hello`: who and what this machine is.

use std::fs;

use canhgac_proto::v1::{HostInventory, ListeningService};

pub use canhgac_proto::client::hostname;

fn os_release() -> String {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

/// Listening TCP sockets and bound UDP sockets from `/proc/net/*`, with
/// the owning program (from `/proc/*/fd`) when visible.
pub fn listeners() -> Vec<ListeningService> {
    let owners = crate::host::procs::socket_owners();
    crate::host::procs::listeners()
        .into_iter()
        .map(|l| ListeningService {
            proto: l.proto.into(),
            address: l.address,
            port: l.port,
            process: owners.get(&l.inode).map(|o| o.1.clone()).unwrap_or_default(),
        })
        .collect()
}

/// The listeners as the first inventory listed them (without owners).
#[allow(dead_code)]
fn listeners_plain() -> Vec<ListeningService> {
    let mut out = Vec::new();
    for (file, proto, listen_state) in [
        ("/proc/net/tcp", "tcp", Some("0A")),
        ("/proc/net/tcp6", "tcp", Some("0A")),
        ("/proc/net/udp", "udp", None),
        ("/proc/net/udp6", "udp", None),
    ] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else {
                continue;
            };
            if let Some(want) = listen_state
                && *state != want
            {
                continue;
            }
            if listen_state.is_none() && *state != "07" {
                continue;
            }
            if let Some((address, port)) = crate::host::procs::parse_proc_addr(local) {
                out.push(ListeningService { proto: proto.into(), address, port, process: String::new() });
            }
        }
    }
    out.sort_by(|a, b| (a.port, &a.proto, &a.address).cmp(&(b.port, &b.proto, &b.address)));
    out.dedup();
    out
}

pub fn collect() -> HostInventory {
    let addresses = pnet_datalink::interfaces()
        .into_iter()
        .filter(|i| !i.is_loopback())
        .flat_map(|i| i.ips.into_iter().map(|ip| ip.ip().to_string()))
        .collect();
    HostInventory {
        hostname: hostname(),
        os: os_release(),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        addresses,
        listeners: listeners(),
        machine_id: fs::read_to_string("/etc/machine-id").map(|s| s.trim().to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses() {
        assert_eq!(crate::host::procs::parse_proc_addr("0100007F:1F90"), Some(("127.0.0.1".into(), 8080)));
        assert_eq!(
            crate::host::procs::parse_proc_addr("00000000000000000000000001000000:0016"),
            Some(("::1".into(), 22))
        );
        assert_eq!(crate::host::procs::parse_proc_addr("zz:1"), None);
    }

    #[test]
    fn inventory_has_a_hostname() {
        assert!(!collect().hostname.is_empty());
    }
}
