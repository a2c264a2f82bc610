//! canhgac agent: the agency side.
//!
//! Data flow: capture ([`capture`]) → decode ([`decode`], [`dns`]) →
//! detection ([`detect`], pure, no I/O) → durable spool ([`spool`]) →
//! uplink ([`uplink`]) → collector. [`daemon`] wires them; [`enroll`] and
//! [`state`] handle identity.

pub mod capture;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod dns;
pub mod enroll;
pub mod eve;
pub mod inventory;
pub mod policy;
pub mod spool;
pub mod state;
pub mod uplink;

/// Version reported to the collector.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
