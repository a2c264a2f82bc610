//! `canhgac audit`: listing the collector's audit log as a verifiable
//! export, and verifying the log or an export (offline against the signed
//! head and the profile's CA, then against the collector's chain).

use std::path::PathBuf;

use canhgac_proto::{audit::SignedHead, client::TlsClient, profile::Profile, v1::*};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::{Failure, connect, output::say};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Prints the audit log, one JSON object per line (an export to verify later).
    List {
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Checks the hash chain of the collector's log (or of an exported file);
    /// exits 1 naming the first bad entry.
    Verify {
        /// An export made with `canhgac audit list`.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

pub async fn run(cmd: AuditCmd, client: &TlsClient, profile: &Profile) -> Result<(), Failure> {
    if let AuditCmd::Verify { file: Some(f) } = &cmd {
        return verify_export_file(f, client, profile).await;
    }
    let mut c = connect(client).await?;
    match cmd {
        AuditCmd::List { after } => {
            let mut after = after;
            let mut head = None;
            loop {
                let r = c.list_audit(ListAuditRequest { after_seq: after, limit: 5000 }).await?.into_inner();
                let Some(last) = r.entries.last().map(|e| e.seq) else { break };
                let mut checkpoints = r.checkpoints.iter().peekable();
                for e in &r.entries {
                    say(audit_json(e).to_string())?;
                    // a checkpoint follows the entry it signs
                    while let Some(cp) = checkpoints.next_if(|c| c.seq <= e.seq) {
                        say(head_json("checkpoint", cp).to_string())?;
                    }
                }
                head = r.head;
                after = last;
                // Each call is itself audited: stop at a short page, or the
                // listing would chase its own entries.
                if r.entries.len() < 5000 {
                    break;
                }
            }
            // the signed head closes the export (`audit verify --file`)
            if let Some(h) = head {
                say(head_json("head", &h).to_string())?;
            }
        }
        AuditCmd::Verify { file: None } => {
            let mut entries: Vec<AuditEntry> = Vec::new();
            let mut checkpoints = Vec::new();
            let mut after = 0;
            let mut head = None;
            loop {
                let r = c.list_audit(ListAuditRequest { after_seq: after, limit: 5000 }).await?.into_inner();
                let Some(last) = r.entries.last().map(|e| e.seq) else { break };
                let n = r.entries.len();
                entries.extend(r.entries);
                checkpoints.extend(r.checkpoints.into_iter().map(signed));
                head = r.head;
                after = last;
                if n < 5000 {
                    break;
                }
            }
            let head = head.map(signed);
            let n = canhgac_proto::audit::verify_export(&entries, head.as_ref(), &profile.ca)
                .map_err(|e| Failure::runtime(format!("audit log broken: {e}")))?;
            let k = canhgac_proto::audit::verify_checkpoints(&entries, &checkpoints, &profile.ca)
                .map_err(|e| Failure::runtime(format!("audit log broken: {e}")))?;
            say(format!(
                "audit log intact: {n} entries, {k} signed checkpoints agree, head {}",
                entries.last().map(|e| e.hash.as_str()).unwrap_or("-")
            ))?;
        }
        AuditCmd::Verify { file: Some(_) } => unreachable!("verified offline above"),
    }
    Ok(())
}

fn signed(h: AuditHead) -> SignedHead {
    SignedHead {
        seq: h.seq,
        hash: h.hash,
        signed_at_us: h.signed_at_us,
        signature: h.signature,
        certificate_pem: h.certificate_pem,
    }
}

fn head_json(kind: &str, h: &AuditHead) -> Value {
    json!({
        "type": kind, "seq": h.seq, "hash": h.hash, "signed_at_us": h.signed_at_us,
        "signature": h.signature, "certificate_pem": h.certificate_pem,
    })
}

fn audit_json(e: &AuditEntry) -> Value {
    json!({
        // exact, in UTC: an export is evidence, and the hash covers time_us
        "seq": e.seq, "time_us": e.time_us,
        "time": canhgac_proto::timefmt::rfc3339(canhgac_proto::timefmt::from_micros(e.time_us)),
        "operator": e.operator, "role": e.role,
        "operator_agency": e.operator_agency, "action": e.action, "target": e.target,
        "outcome": e.outcome, "detail": e.detail, "prev_hash": e.prev_hash, "hash": e.hash,
    })
}

/// `audit verify --file`: offline against the signed head and the
/// profile's CA, then, when the collector answers, against its chain.
async fn verify_export_file(
    f: &std::path::Path,
    client: &TlsClient,
    profile: &Profile,
) -> Result<(), Failure> {
    let text = String::from_utf8(crate::admin::read_file(f)?)
        .map_err(|_| Failure::usage("the export is not UTF-8"))?;
    let (entries, checkpoints, head) =
        parse_export(&text).map_err(|e| Failure::runtime(format!("audit export: {e}")))?;
    let n = canhgac_proto::audit::verify_export(&entries, head.as_ref(), &profile.ca)
        .map_err(|e| Failure::runtime(format!("audit export broken: {e}")))?;
    let k = canhgac_proto::audit::verify_checkpoints(&entries, &checkpoints, &profile.ca)
        .map_err(|e| Failure::runtime(format!("audit export broken: {e}")))?;
    let head = head.unwrap_or_default();
    let offline = format!(
        "audit export intact: {n} entries, {k} signed checkpoints agree, ending at the head the collector signed (entry {}, {})",
        head.seq, head.hash
    );
    let mut c = match connect(client).await {
        Ok(c) => c,
        Err(e) => {
            say(offline)?;
            return say(format!("not compared with the collector's chain: {}", e.message));
        }
    };
    let theirs = c
        .list_audit(ListAuditRequest { after_seq: head.seq.saturating_sub(1), limit: 1 })
        .await
        .map_err(|e| Failure::from(e).context("audit verify (comparing with the collector)"))?
        .into_inner();
    match theirs.entries.first() {
        Some(e) if e.seq == head.seq && e.hash == head.hash => {}
        Some(e) if e.seq == head.seq => {
            return Err(Failure::runtime(format!(
                "audit export broken: entry {} differs from the collector's chain (hash {} there)",
                e.seq, e.hash
            )));
        }
        _ => {
            return Err(Failure::runtime(format!(
                "audit export broken: the collector has no entry {} (another collector's export?)",
                head.seq
            )));
        }
    }
    say(offline)?;
    say("it matches the collector's chain")
}

/// An export read back: entries, checkpoints, the closing head.
type Export = (Vec<AuditEntry>, Vec<SignedHead>, Option<SignedHead>);

/// Reads an export: entry lines with checkpoint lines among them, then the
/// signed head line. Every field shown must agree with what the hash
/// covers (`time` with `time_us`).
fn parse_export(text: &str) -> Result<Export, String> {
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    let mut head = None;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let n = i + 1;
        let j: Value = serde_json::from_str(line).map_err(|e| format!("line {n}: not JSON: {e}"))?;
        if head.is_some() {
            return Err(format!("line {n}: entries after the signed head"));
        }
        if j["type"] == "head" || j["type"] == "checkpoint" {
            let s = |k: &str| j[k].as_str().unwrap_or_default().to_string();
            let h = SignedHead {
                seq: j["seq"].as_u64().ok_or_else(|| format!("line {n}: {} without seq", j["type"]))?,
                hash: s("hash"),
                signed_at_us: j["signed_at_us"].as_i64().unwrap_or(0),
                signature: s("signature"),
                certificate_pem: s("certificate_pem"),
            };
            if j["type"] == "head" {
                head = Some(h);
            } else {
                checkpoints.push(h);
            }
            continue;
        }
        let rec = audit_entry(&j);
        let shown = j["time"].as_str().unwrap_or_default();
        let covered = canhgac_proto::timefmt::rfc3339(canhgac_proto::timefmt::from_micros(rec.time_us));
        let same = canhgac_proto::timefmt::parse_rfc3339(shown)
            .map(|t| canhgac_proto::timefmt::micros(t) == rec.time_us)
            .unwrap_or(false);
        if !same {
            return Err(format!(
                "line {n} (entry {}): `time` {shown} is not the time the hash covers ({covered}): edited",
                rec.seq
            ));
        }
        entries.push(rec);
    }
    Ok((entries, checkpoints, head))
}

fn audit_entry(v: &Value) -> AuditEntry {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    AuditEntry {
        seq: v["seq"].as_u64().unwrap_or(0),
        time_us: v["time_us"].as_i64().unwrap_or(0),
        operator: s("operator"),
        role: s("role"),
        operator_agency: s("operator_agency"),
        action: s("action"),
        target: s("target"),
        outcome: s("outcome"),
        detail: s("detail"),
        prev_hash: s("prev_hash"),
        hash: s("hash"),
        time: None,
    }
}
