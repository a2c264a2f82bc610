//! An agent's stream message as the collector handles it: batch checks and
//! record preparation (see `canhgac_collector::fuzzing::telemetry`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| canhgac_collector::fuzzing::telemetry(data));
