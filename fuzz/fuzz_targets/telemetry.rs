#![no_main]
use canhgac_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let _ = v1::AgentMessage::decode(data);
    let _ = v1::CollectorMessage::decode(data);
    let _ = v1::EnrollRequest::decode(data);
});
