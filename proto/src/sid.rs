//! Signature ids of canhgac's built-in detections.
//!
//! Built-in detectors of the agent and the collector raise alerts with
//! signature ids in one reserved range, so that they never collide with a
//! rule's: the agent's rule loader skips any rule whose sid falls in it
//! (`rules check` and `policy push` name such rules). The table of ids and
//! what raises each is in README.md ("Built-in signature ids").
//!
//! | range | owner |
//! |---|---|
//! | 9000000–9000099 | agent: indicator matches |
//! | 9000100–9000199 | agent: network behaviour (scans, guessing, tunnels, beacons) |
//! | 9000200–9000299 | agent: host sensor (logins, file integrity, processes) |
//! | 9000300–9000399 | agent: data protection (state-secret markers, host and network) |
//! | 9100000–9100099 | collector: supervision (silent agents) |
//! | the rest up to 9199999 | reserved for later detectors |

use std::ops::RangeInclusive;

/// Every built-in signature id lies here; rules may not use it.
pub const RESERVED: RangeInclusive<u64> = 9_000_000..=9_199_999;

/// `agent-silent`: an agent stopped reporting for longer than the limit.
pub const AGENT_SILENT: u64 = 9_100_001;

/// Whether a rule's sid collides with the built-in range.
pub fn is_reserved(sid: u64) -> bool {
    RESERVED.contains(&sid)
}
