//! canhgac agent: the agency side.
//!
//! Data flow: capture ([`capture`]) → decode ([`decode`], [`defrag`]) →
//! flows and TCP reassembly ([`flow`]) → application layer ([`app`],
//! [`dns`]) → detection ([`detect`], pure, no I/O) → EVE records ([`eve`])
//! → durable spool ([`spool`]) → uplink ([`uplink`]) → collector.
//! [`daemon`] wires them; [`enroll`] and [`state`] handle identity. The host
//! sensor ([`host`]: authentication logs, file integrity, listeners and
//! processes) feeds the same spool. [`secrets`] finds state-secret markers
//! in documents, for both sensors and `scan-secrets`.

pub mod analyze;
pub mod app;
pub mod capture;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod decode;
pub mod defrag;
pub mod detect;
pub mod dns;
pub mod enroll;
pub mod eve;
pub mod facts;
pub mod flow;
pub mod fuzzing;
pub mod host;
pub mod inventory;
pub mod metrics;
pub mod policy;
pub mod rules;
pub mod secrets;
pub mod spool;
pub mod state;
pub mod uplink;

/// Version reported to the collector.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
