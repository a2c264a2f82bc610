//! Live capture on an interface through a `TPACKET_V3` ring (AF_PACKET;
//! needs CAP_NET_RAW), as Suricata's and libpcap's capture do.
//!
//! The kernel writes frames into blocks of a ring mapped into the agent's
//! memory and hands a block over when it is full or after
//! [`BLOCK_TIMEOUT_MS`]; the worker reads every frame of the block in place
//! and gives the block back. No system call and no copy per packet (pnet's
//! channel makes a `poll` and a `recvfrom` per packet, a quarter of the
//! worker's time at 1 Gbit/s), and the ring, not the socket buffer
//! (`net.core.rmem_max`), absorbs bursts. pnet still names the interfaces.
//! With several workers the sockets join one `PACKET_FANOUT_HASH` group:
//! the kernel spreads flows over them by a symmetric flow hash (both
//! directions of a flow reach the same worker) and reassembles IP fragments
//! first.

// The only unsafe code of the project: the ring is the kernel's interface
// (setsockopt(2), mmap(2), poll(2) and the block headers the kernel
// writes), which neither pnet nor socket2 exposes.
#![allow(unsafe_code)]

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    sync::atomic::{Ordering, fence},
};

use pnet_datalink::NetworkInterface;
use socket2::{Domain, Protocol, Socket, Type};

/// A block is handed over at the latest this long after its first frame.
pub const BLOCK_TIMEOUT_MS: u32 = 10;
/// Size of one ring block; also the largest frame the ring carries.
const BLOCK_SIZE: usize = 1 << 20;
/// Frame slot size the kernel checks the ring's geometry with (`TPACKET_V3`
/// frames are packed, this only has to divide the block).
const FRAME_SIZE: usize = 2048;

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

/// An open capture: the socket and its mapped ring.
pub struct Capture {
    socket: OwnedFd,
    ring: *mut u8,
    blocks: usize,
    next: usize,
}

// SAFETY: the ring is owned by this value alone (one worker reads it); the
// kernel's side synchronises through the block status words.
unsafe impl Send for Capture {}

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

/// setsockopt(2) at the `SOL_PACKET` level with a plain value.
fn set_packet_option<T>(fd: &OwnedFd, option: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: `fd` is an open socket; `value` points to a live `T` whose
    // size is passed, as setsockopt(2) requires.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Opens a capture on `name` with a ring of `ring_bytes` (rounded to whole
/// 1 MiB blocks, at least 2); `fanout` joins a fanout group.
pub fn open(name: &str, fanout: Option<u16>, ring_bytes: usize) -> Result<Capture, LiveError> {
    let interfaces = pnet_datalink::interfaces();
    let Some(iface) = interfaces.iter().find(|i| i.name == name).cloned() else {
        let available =
            interfaces.iter().map(|i: &NetworkInterface| i.name.clone()).collect::<Vec<_>>().join(", ");
        return Err(LiveError::NoSuchInterface { name: name.to_string(), available });
    };
    if iface.mac.is_none() && !iface.is_loopback() {
        return Err(LiveError::Unsupported(name.to_string()));
    }
    let io = |e: std::io::Error| LiveError::Io { name: name.to_string(), source: e };
    let proto = (libc::ETH_P_ALL as u16).to_be();
    let socket: OwnedFd = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(i32::from(proto))))
        .map_err(|e| permission_or(name, e))?
        .into();
    set_packet_option(&socket, libc::PACKET_VERSION, &(libc::tpacket_versions::TPACKET_V3 as libc::c_int))
        .map_err(io)?;
    let blocks = (ring_bytes / BLOCK_SIZE).max(2);
    let req = libc::tpacket_req3 {
        tp_block_size: BLOCK_SIZE as u32,
        tp_block_nr: blocks as u32,
        tp_frame_size: FRAME_SIZE as u32,
        tp_frame_nr: (blocks * (BLOCK_SIZE / FRAME_SIZE)) as u32,
        tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    set_packet_option(&socket, libc::PACKET_RX_RING, &req).map_err(io)?;
    // SAFETY: maps the ring the kernel just allocated for this socket, of
    // exactly the size requested; nothing else maps it.
    let ring = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            blocks * BLOCK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            socket.as_raw_fd(),
            0,
        )
    };
    if ring == libc::MAP_FAILED {
        return Err(io(std::io::Error::last_os_error()));
    }
    let capture = Capture { socket, ring: ring.cast(), blocks, next: 0 };
    // SAFETY: zeroed `sockaddr_ll` is valid; the fields set name the
    // interface and protocol, and its size is passed to bind(2).
    let r = unsafe {
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = iface.index as i32;
        libc::bind(
            capture.socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    // promiscuous, as pnet did: a mirror port carries others' traffic
    // SAFETY: zeroed `packet_mreq` is valid; the fields name the interface.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = iface.index as i32;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    set_packet_option(&capture.socket, libc::PACKET_ADD_MEMBERSHIP, &mreq).map_err(io)?;
    if let Some(group) = fanout {
        let mode = (libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) << 16;
        set_packet_option(&capture.socket, libc::PACKET_FANOUT, &(u32::from(group) | mode)).map_err(io)?;
    }
    Ok(capture)
}

impl Capture {
    /// The header of block `i`.
    fn block(&self, i: usize) -> *mut libc::tpacket_block_desc {
        // SAFETY: `i < self.blocks`, so the offset stays inside the mapping.
        unsafe { self.ring.add(i * BLOCK_SIZE).cast() }
    }

    fn block_status(&self, i: usize) -> *mut u32 {
        // SAFETY: the status word lies in block `i`'s header, in the mapping.
        unsafe { std::ptr::addr_of_mut!((*self.block(i)).hdr.bh1.block_status) }
    }

    /// Waits up to `timeout_ms` for the next block the kernel has filled,
    /// hands each of its frames to `frame` (the bytes and the kernel's
    /// receive time in Unix nanoseconds), then gives the block back.
    /// Returns the number of frames (0 when the wait timed out).
    pub fn next_block(
        &mut self,
        timeout_ms: i32,
        mut frame: impl FnMut(&[u8], i128),
    ) -> std::io::Result<usize> {
        let status = self.block_status(self.next);
        // SAFETY: the status word is in the mapping; the kernel writes it,
        // hence a volatile read, and the acquire fence orders the reads of
        // the block after it.
        if unsafe { std::ptr::read_volatile(status) } & libc::TP_STATUS_USER == 0 {
            let mut pfd = libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                return if e.kind() == std::io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
            }
            // SAFETY: as above.
            if unsafe { std::ptr::read_volatile(status) } & libc::TP_STATUS_USER == 0 {
                if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    // the interface went down or away (ENETDOWN, ENXIO)
                    let e = socket2::SockRef::from(&self.socket).take_error()?;
                    return Err(e.unwrap_or_else(|| std::io::Error::other("the capture socket failed")));
                }
                return Ok(0);
            }
        }
        fence(Ordering::Acquire);
        let block = self.block(self.next).cast::<u8>();
        // SAFETY: the block is ours until its status goes back to the
        // kernel; the kernel wrote `num_pkts` frames from
        // `offset_to_first_pkt`, each header's `tp_next_offset` leading to
        // the next, every frame inside the block (checked anyway).
        let n = unsafe {
            let h = &(*self.block(self.next)).hdr.bh1;
            let n = h.num_pkts as usize;
            let mut off = h.offset_to_first_pkt as usize;
            for _ in 0..n {
                if off + std::mem::size_of::<libc::tpacket3_hdr>() > BLOCK_SIZE {
                    break;
                }
                let ph = &*block.add(off).cast::<libc::tpacket3_hdr>();
                let start = off + usize::from(ph.tp_mac);
                let len = ph.tp_snaplen as usize;
                if start + len <= BLOCK_SIZE {
                    let data = std::slice::from_raw_parts(block.add(start), len);
                    frame(data, i128::from(ph.tp_sec) * 1_000_000_000 + i128::from(ph.tp_nsec));
                }
                if ph.tp_next_offset == 0 {
                    break;
                }
                off += ph.tp_next_offset as usize;
            }
            n
        };
        fence(Ordering::Release);
        // SAFETY: the status word is in the mapping; writing KERNEL gives the
        // block back (nothing of it is read after this).
        unsafe { std::ptr::write_volatile(status, libc::TP_STATUS_KERNEL) };
        self.next = (self.next + 1) % self.blocks;
        Ok(n)
    }

    /// Reads and resets the kernel's counters of this socket.
    pub fn kernel_stats(&self) -> Option<KernelStats> {
        let mut stats = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: the socket is open; `stats` and `len` are valid for writes
        // of the size passed, as getsockopt(2) requires.
        let r = unsafe {
            libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        (r == 0)
            .then(|| KernelStats { packets: u64::from(stats.tp_packets), drops: u64::from(stats.tp_drops) })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, which nothing
        // borrows any more; the socket closes after.
        unsafe { libc::munmap(self.ring.cast(), self.blocks * BLOCK_SIZE) };
    }
}
