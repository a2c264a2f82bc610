//! End-to-end tests: the real `canhgac-collector`, `canhgac-agent` and
//! `canhgac` binaries as separate processes, mutual TLS on loopback, sled
//! on disk, SIGKILL for faults.

#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::disallowed_methods)]

mod clock_skew;
mod console;
mod diskfull;
mod faults;
mod federation;
mod flow;
mod host;
mod hygiene;
mod live;
mod metrics;
mod migrate;
mod network_faults;
mod package;
mod postgres;
mod reload;
mod replay;
mod security;
mod storage;
mod supervision;
mod weblogs;

use canhgac_tests::{Agent, Collector};

/// A collector with one agency and one enrolled agent.
pub fn setup(root: &std::path::Path) -> (Collector, Agent) {
    let mut c = Collector::init(root);
    c.start();
    c.add_agency("SO-TTTT", "Sở Thông tin và Truyền thông");
    let token = c.token("SO-TTTT", None);
    let agent = Agent::new(root, "agent");
    agent.enroll(&c, &token);
    (c, agent)
}
