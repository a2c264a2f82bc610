//! Rule text, then traffic matched against what loaded (see
//! `canhgac_agent::fuzzing::rules`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| canhgac_agent::fuzzing::rules(data));
