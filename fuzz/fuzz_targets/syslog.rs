#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| canhgac_agent::fuzzing::syslog_messages(data));
