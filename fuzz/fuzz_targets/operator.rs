//! Operator requests, checked as the RPCs check them (see
//! `canhgac_collector::fuzzing::operator`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| canhgac_collector::fuzzing::operator(data));
