//! DNS message parser for untrusted bytes (UDP payloads, or TCP segments
//! holding a whole length-prefixed message).
//!
//! Tolerant where it can be: the header and the questions must parse, the
//! answer section is read best-effort (a malformed record ends it), so a
//! junk trailer cannot hide the query name from detection. Names follow
//! compression pointers with a hop limit and are rendered as Suricata does
//! (labels joined by `.`, non-printable bytes as `\xNN`).

use std::net::{Ipv4Addr, Ipv6Addr};

use nom::{IResult, Parser, number::complete::be_u16};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub flags: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
    /// The authority section (read best-effort, like the answers).
    pub authorities: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Name(String),
    /// The character-strings of a TXT record, non-printable bytes as `\xNN`.
    Txt(Vec<String>),
    Other(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS message truncated")]
    Incomplete,
    #[error("malformed DNS message: {0}")]
    Malformed(&'static str),
}

const MAX_HOPS: usize = 32;
const MAX_NAME: usize = 1024;
const MAX_QUESTIONS: usize = 32;
const MAX_ANSWERS: usize = 64;

pub fn rrtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        10 => "NULL".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        41 => "OPT".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        n => format!("TYPE{n}"),
    }
}

pub fn rcode_name(r: u8) -> String {
    match r {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// Reads a possibly compressed name starting at `pos` of `msg`; returns the
/// name and the position after it in the original sequence.
const HEX: &[u8; 16] = b"0123456789abcdef";

fn name_at(msg: &[u8], mut pos: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::with_capacity(64);
    let mut end = None;
    let mut hops = 0;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Incomplete)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok((out, end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + len as usize).ok_or(DnsError::Incomplete)?;
                if !out.is_empty() {
                    out.push('.');
                }
                let plain = |b: &u8| b.is_ascii_graphic() && *b != b'.';
                match std::str::from_utf8(label) {
                    // the usual label: printable ASCII, copied at once
                    Ok(text) if label.iter().all(plain) => out.push_str(text),
                    _ => {
                        for b in label {
                            if plain(b) {
                                out.push(char::from(*b));
                            } else {
                                out.push_str("\\x");
                                out.push(char::from(HEX[usize::from(b >> 4)]));
                                out.push(char::from(HEX[usize::from(b & 15)]));
                            }
                        }
                    }
                }
                if out.len() > MAX_NAME {
                    return Err(DnsError::Malformed("name too long"));
                }
                pos += 1 + len as usize;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(DnsError::Incomplete)?;
                let target = (((len & 0x3f) as usize) << 8) | lo as usize;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                hops += 1;
                if hops > MAX_HOPS || target >= msg.len() {
                    return Err(DnsError::Malformed("compression pointer"));
                }
                pos = target;
            }
            _ => return Err(DnsError::Malformed("label type")),
        }
    }
}

struct Header {
    id: u16,
    flags: u16,
    questions: u16,
    answers: u16,
    authorities: u16,
}

fn header(i: &[u8]) -> IResult<&[u8], Header> {
    let (rest, (id, flags, questions, answers, authorities, _additional)) =
        (be_u16, be_u16, be_u16, be_u16, be_u16, be_u16).parse(i)?;
    Ok((rest, Header { id, flags, questions, answers, authorities }))
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, DnsError> {
    let b = msg.get(pos..pos + 2).ok_or(DnsError::Incomplete)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

pub fn parse(msg: &[u8]) -> Result<Message, DnsError> {
    let (_, Header { id, flags, questions: qd, answers: an, authorities: ns }) =
        header(msg).map_err(|_| DnsError::Incomplete)?;
    if qd as usize > MAX_QUESTIONS {
        return Err(DnsError::Malformed("too many questions"));
    }
    let mut pos = 12;
    let mut questions = Vec::with_capacity(qd as usize);
    for _ in 0..qd {
        let (name, next) = name_at(msg, pos)?;
        let qtype = u16_at(msg, next)?;
        let qclass = u16_at(msg, next + 2)?;
        pos = next + 4;
        questions.push(Question { name, qtype, qclass });
    }
    let mut answers = Vec::new();
    let mut authorities = Vec::new();
    let mut complete = true;
    for _ in 0..(an as usize).min(MAX_ANSWERS) {
        match answer(msg, pos) {
            Ok((a, next)) => {
                answers.push(a);
                pos = next;
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    if complete && an as usize <= MAX_ANSWERS {
        for _ in 0..(ns as usize).min(MAX_ANSWERS) {
            match answer(msg, pos) {
                Ok((a, next)) => {
                    authorities.push(a);
                    pos = next;
                }
                Err(_) => break,
            }
        }
    }
    Ok(Message {
        id,
        flags,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0f) as u8,
        rcode: (flags & 0x000f) as u8,
        questions,
        answers,
        authorities,
    })
}

fn answer(msg: &[u8], pos: usize) -> Result<(Answer, usize), DnsError> {
    let (name, next) = name_at(msg, pos)?;
    let rtype = u16_at(msg, next)?;
    let ttl = (u32::from(u16_at(msg, next + 4)?) << 16) | u32::from(u16_at(msg, next + 6)?);
    let rdlen = u16_at(msg, next + 8)? as usize;
    let start = next + 10;
    let rdata = msg.get(start..start + rdlen).ok_or(DnsError::Incomplete)?;
    let data = match (rtype, rdlen) {
        (1, 4) => RData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
        (28, 16) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(rdata);
            RData::Aaaa(Ipv6Addr::from(b))
        }
        (2 | 5 | 12, _) => RData::Name(name_at(msg, start)?.0),
        (16, _) => RData::Txt(txt_strings(rdata)),
        _ => RData::Other(rdlen),
    };
    Ok((Answer { name, rtype, ttl, data }, start + rdlen))
}

/// The character-strings of TXT rdata (a length byte, then the bytes; a
/// string cut short by the rdata end keeps what is there).
fn txt_strings(mut rdata: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = rdata.split_first() {
        let s = &rest[..rest.len().min(len as usize)];
        let mut text = String::with_capacity(s.len());
        for &b in s {
            if b.is_ascii_graphic() || b == b' ' {
                text.push(b as char);
            } else {
                text.push_str(&format!("\\x{b:02x}"));
            }
        }
        out.push(text);
        rdata = &rest[s.len()..];
    }
    out
}

/// DNS over TCP: a 2-byte length, then the message. Only whole messages in
/// one segment are parsed here.
pub fn parse_tcp(segment: &[u8]) -> Result<Message, DnsError> {
    let len = u16_at(segment, 0)? as usize;
    let body = segment.get(2..2 + len).ok_or(DnsError::Incomplete)?;
    parse(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, id: u16) -> Vec<u8> {
        let mut m = vec![(id >> 8) as u8, id as u8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    #[test]
    fn parses_a_query() {
        let m = parse(&query("drivres-update.info", 7)).unwrap();
        assert_eq!(m.id, 7);
        assert!(!m.response);
        assert_eq!(m.questions[0].name, "drivres-update.info");
        assert_eq!(rrtype_name(m.questions[0].qtype), "A");
    }

    #[test]
    fn parses_a_compressed_answer_and_tolerates_junk_after_questions() {
        let mut r = query("a.example", 1);
        r[2] = 0x81;
        r[7] = 2; // two answers claimed
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        r.extend_from_slice(&[0xc0, 0xff]); // second answer broken
        let m = parse(&r).unwrap();
        assert!(m.response);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name, "a.example");
        assert_eq!(m.answers[0].data, RData::A(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn pointer_loops_and_truncation_are_errors_not_panics() {
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert_eq!(parse(&m), Err(DnsError::Malformed("compression pointer")));
        m.truncate(13);
        assert!(parse(&m).is_err());
        let q = query("x.y", 1);
        for n in 0..q.len() {
            assert!(parse(&q[..n]).is_err());
        }
    }

    #[test]
    fn non_printable_bytes_are_escaped() {
        let mut q = query("ab.c", 1);
        q[13] = 0x01;
        assert_eq!(parse(&q).unwrap().questions[0].name, "\\x01b.c");
    }
}
