//! canhgac collector: the provincial side.
//!
//! * [`pki`]: the collector CA (agent and operator certificates).
//! * [`tls`]: TLS 1.3 server, client-certificate checks, accept loop.
//! * [`auth`]: the one place RPCs are authorised.
//! * [`store`]: sled storage (the only module that touches sled).
//! * [`service`]: gRPC services (enrollment, telemetry, operator).
//! * [`server`]: wiring; [`server::run`] serves on a caller-bound listener.
//! * [`admin`]: `canhgac-collector init` and `ca-pin`.
//! * [`rules`]: regulatory data (categories, deadline packs, periods).
//! * [`directory`]: registry columns, validation, CSV/JSON import/export.
//! * [`incidents`]: correlation, workflow, deadlines, reports.
//! * [`audit`]: sealing and signing the hash-chained audit log.
//! * [`policy`]: central policy files for agents.
//! * [`supervise`]: agent-silence watchdog and retention.
//! * [`forward`]: syslog/HTTPS forwarder with a durable queue.
//! * [`fuzzing`]: fuzz target bodies for telemetry and operator requests.

#![recursion_limit = "256"]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod config;
pub mod console;
pub mod coverage;
pub mod directory;
pub mod error;
pub mod federation;
pub mod forward;
pub mod fuzzing;
pub mod incident;
pub mod metrics;
pub mod pki;
pub mod policy;
pub mod registry;
pub mod replica;
pub mod report;
pub mod rules;
pub mod server;
pub mod service;
pub mod store;
pub mod supervise;
pub mod tls;

/// The UTC date of a microsecond timestamp.
pub fn timefmt_date(us: i64) -> time::Date {
    canhgac_proto::timefmt::from_micros(us).date()
}
