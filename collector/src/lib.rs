//! canhgac collector: the provincial side.
//!
//! * [`pki`]: the collector CA (agent and operator certificates).
//! * [`tls`]: TLS 1.3 server, client-certificate checks, accept loop.
//! * [`auth`]: the one place RPCs are authorised.
//! * [`store`]: sled storage (the only module that touches sled).
//! * [`service`]: gRPC services (enrollment, telemetry, operator).
//! * [`server`]: wiring; [`server::run`] serves on a caller-bound listener.
//! * [`profile`] and [`cli`]: the `canhgac` operator command line.
//! * [`admin`]: `canhgac-collector init` and `ca-pin`.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod pki;
pub mod profile;
pub mod registry;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
