//! Contract checks for the generated v1 code.

#![allow(clippy::unwrap_used)]

use canhgac_proto::v1;
use prost::Message as _;

/// v1 only grows: a message encoded with the fields of a newer revision
/// decodes in an older one and the other way round (unknown fields skipped).
#[test]
fn unknown_fields_are_skipped() {
    let newer = v1::AgentCounters { packets_captured: 7, uptime_seconds: 9, ..Default::default() };
    let mut bytes = newer.encode_to_vec();
    // A field number v1 does not define yet (999, varint 1).
    bytes.extend_from_slice(&[0xb8, 0x3e, 0x01]);
    let decoded = v1::AgentCounters::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.packets_captured, 7);
    assert_eq!(decoded.uptime_seconds, 9);
}

/// The descriptor set for reflection names every service.
#[test]
fn descriptor_set_lists_services() {
    let fds = prost_types::FileDescriptorSet::decode(canhgac_proto::FILE_DESCRIPTOR_SET).unwrap();
    let file = fds.file.iter().find(|f| f.package() == "canhgac.v1").unwrap();
    let names: Vec<_> = file.service.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["Enrollment", "Telemetry", "Operator"]);
}

/// Garbage never panics the decoder.
#[test]
fn garbage_does_not_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for len in 0..512 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = v1::AgentMessage::decode(bytes.as_slice());
        let _ = v1::CollectorMessage::decode(bytes.as_slice());
    }
}
