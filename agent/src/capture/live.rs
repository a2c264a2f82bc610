//! Live capture on an interface with pnet (AF_PACKET; needs CAP_NET_RAW).
//!
//! The socket is created here (with socket2) and handed to pnet, so that
//! the kernel's drop counters (`PACKET_STATISTICS`) can be read from it.
//! With several workers the sockets join one `PACKET_FANOUT_HASH` group:
//! the kernel spreads flows over them by a symmetric flow hash (both
//! directions of a flow reach the same worker) and reassembles IP fragments
//! first.

// The only unsafe code of the project: reading PACKET_STATISTICS needs
// getsockopt(2) on the capture socket, which neither pnet nor socket2
// exposes.
#![allow(unsafe_code)]

use std::{os::fd::IntoRawFd as _, time::Duration};

use pnet_datalink::{Channel, Config, DataLinkReceiver, FanoutOption, FanoutType, NetworkInterface};
use socket2::{Domain, Protocol, Socket, Type};

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

/// An open capture socket.
pub struct Capture {
    pub rx: Box<dyn DataLinkReceiver>,
    fd: i32,
}

/// Kernel counters since the last read (the kernel resets them on read).
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelStats {
    pub packets: u64,
    pub drops: u64,
}

fn permission_or(name: &str, e: std::io::Error) -> LiveError {
    if e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EPERM) {
        LiveError::Permission { name: name.to_string() }
    } else {
        LiveError::Io { name: name.to_string(), source: e }
    }
}

/// Opens a capture on `name`; `fanout` joins a fanout group.
pub fn open(name: &str, fanout: Option<u16>) -> Result<Capture, LiveError> {
    let interfaces = pnet_datalink::interfaces();
    let Some(iface) = interfaces.iter().find(|i| i.name == name).cloned() else {
        let available =
            interfaces.iter().map(|i: &NetworkInterface| i.name.clone()).collect::<Vec<_>>().join(", ");
        return Err(LiveError::NoSuchInterface { name: name.to_string(), available });
    };
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(proto)))
        .map_err(|e| permission_or(name, e))?;
    // 4 MiB of kernel buffer absorbs bursts while a worker is busy.
    let _ = socket.set_recv_buffer_size(4 * 1024 * 1024);
    let fd = socket.into_raw_fd();
    let config = Config {
        read_timeout: Some(Duration::from_millis(100)),
        read_buffer_size: 1 << 16,
        linux_fanout: fanout.map(|group_id| FanoutOption {
            group_id,
            fanout_type: FanoutType::HASH,
            defrag: true,
            rollover: false,
        }),
        socket_fd: Some(fd),
        ..Config::default()
    };
    match pnet_datalink::channel(&iface, config) {
        Ok(Channel::Ethernet(_tx, rx)) => Ok(Capture { rx, fd }),
        Ok(_) => Err(LiveError::Unsupported(name.to_string())),
        Err(e) => Err(permission_or(name, e)),
    }
}

impl Capture {
    /// Reads and resets the kernel's counters of this socket.
    pub fn kernel_stats(&self) -> Option<KernelStats> {
        let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `fd` is the open AF_PACKET socket owned by `self.rx`, which
        // lives as long as `self`; `stats` and `len` are valid for writes of
        // the size passed, as getsockopt(2) requires.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        (r == 0)
            .then(|| KernelStats { packets: u64::from(stats.tp_packets), drops: u64::from(stats.tp_drops) })
    }
}
