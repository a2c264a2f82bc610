//! The canhgac wire contract.
//!
//! * [`v1`]: messages and gRPC services generated from
//!   `canhgac/v1/canhgac.proto` (package `canhgac.v1`).
//! * [`identity`]: how agents and operators are named inside certificates.
//! * [`client`]: the mutual-TLS client transport used by the agent and the
//!   operator command line (TLS 1.3 only, one crypto provider: ring).
//! * [`conf`]: two-stage TOML configuration with errors naming file, line
//!   and field.
//! * [`files`]: atomic file writes, logging set-up.
//! * [`audit`]: the audit chain's format and its verification (signed
//!   heads included), shared by the collector and the command line.
//! * [`profile`]: operator profiles (how `canhgac` reaches a collector).
//! * [`json`]: JSON forms of wire messages (command line and forwarder).
//! * [`timefmt`]: conversions between protobuf timestamps, `OffsetDateTime`
//!   and the EVE timestamp format.

pub mod audit;
pub mod client;
pub mod conf;
pub mod files;
pub mod identity;
pub mod json;
pub mod profile;
pub mod sid;
pub mod timefmt;

/// Generated code for `package canhgac.v1`.
#[allow(clippy::all, clippy::unwrap_used, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("canhgac.v1");
}

/// Encoded `FileDescriptorSet` of the v1 contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/canhgac_v1_descriptor.bin"));

/// Telemetry protocol revision spoken by this build (sent in `Hello`).
pub const TELEMETRY_PROTOCOL_VERSION: u32 = 1;

/// Default TCP port of the collector.
pub const DEFAULT_PORT: u16 = 7443;

/// SHA-256 of a DER certificate as lowercase hex: the "CA pin".
pub fn cert_pin(der: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(der))
}

/// Normalises a pin given by a user: accepts upper case and `:` separators.
pub fn normalize_pin(pin: &str) -> Option<String> {
    let cleaned: String = pin.trim().chars().filter(|c| *c != ':').map(|c| c.to_ascii_lowercase()).collect();
    (cleaned.len() == 64 && cleaned.chars().all(|c| c.is_ascii_hexdigit())).then_some(cleaned)
}
