//! gRPC service implementations. Authorisation happens before these run
//! (see [`crate::auth`]); errors become statuses in [`crate::error`].

pub mod enroll;
pub mod operator;
pub mod raw_object;
pub mod telemetry;

/// Keeps printable text of bounded length from an untrusted field.
pub fn clean_text(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}
