//! `canhgac-bench-sensor`: the network sensor on a large capture, next to a
//! decode-only baseline on the same packets in the same run.
//!
//! The input is every capture given (by default all of
//! `../shared/corpus/**/*.pcap*`) loaded into memory once and replayed
//! `--repeat` times, so that disk reads are not measured. Three passes:
//!
//! 1. baseline: link-layer, IP and transport decoding only;
//! 2. the engine without signature rules (same as 3 minus the rules);
//! 3. engine: the full detection engine (IP reassembly, flows, TCP
//!    reassembly, DNS/TLS/HTTP/SSH parsers, indicators, signatures,
//!    behavioural detectors), alerts only, as the daemon runs it.
//!
//! Prints packets/s, Gbit/s, flows/s and peak RSS (high-water mark so far)
//! for each, and the ratios to the baseline.
//!
//! Usage: `cargo run --release --bin canhgac-bench-sensor -- [--repeat N]
//! [--pcap FILE]... [--ioc FILE]... [--rules FILE]...`

#![allow(clippy::print_stderr)]

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use canhgac_agent::{
    capture::pcap::PacketReader,
    decode::{self, LinkType},
    detect::{Engine, EngineConfig, IocSet, Output},
};
use time::OffsetDateTime;

struct Frame {
    linktype: u32,
    ts: Duration,
    data: Vec<u8>,
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn find_pcaps(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_pcaps(&p, out);
        } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
            out.push(p);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut repeat = 20usize;
    let (mut pcaps, mut iocs, mut rules) = (Vec::new(), Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--repeat" => repeat = value()?.parse()?,
            "--pcap" => pcaps.push(PathBuf::from(value()?)),
            "--ioc" => iocs.push(PathBuf::from(value()?)),
            "--rules" => rules.push(PathBuf::from(value()?)),
            other => anyhow::bail!("unknown argument `{other}`"),
        }
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    if pcaps.is_empty() {
        find_pcaps(&corpus, &mut pcaps);
        pcaps.sort();
    }
    if iocs.is_empty() {
        let trails = corpus.join("maltrail/trails/static");
        let mut lists = Vec::new();
        find_lists(&trails, &mut lists);
        iocs = lists.into_iter().map(|p| PathBuf::from(format!("maltrail:{}", p.display()))).collect();
    }
    if rules.is_empty()
        && let Ok(entries) = std::fs::read_dir(corpus.join("Suricata_Repository"))
    {
        rules = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rules"))
            .collect();
        rules.sort();
    }
    anyhow::ensure!(!pcaps.is_empty(), "no captures: pass --pcap FILE or provide ../shared/corpus");

    let mut frames = Vec::new();
    for p in &pcaps {
        let mut r = PacketReader::open(p)?;
        while let Ok(Some(raw)) = r.next_packet() {
            frames.push(Frame { linktype: raw.linktype, ts: raw.ts, data: raw.data.into_owned() });
        }
    }
    let bytes_once: u64 = frames.iter().map(|f| f.data.len() as u64).sum();
    eprintln!(
        "input: {} packets ({:.1} MiB) from {} captures, replayed {repeat} times; {} indicator lists, {} rule files",
        frames.len(),
        bytes_once as f64 / 1048576.0,
        pcaps.len(),
        iocs.len(),
        rules.len()
    );
    let packets = frames.len() as u64 * repeat as u64;
    let bytes = bytes_once * repeat as u64;

    // 1. decode only
    let hwm_start = vm_hwm_kib();
    let started = Instant::now();
    let mut decoded = 0u64;
    for round in 0..repeat {
        for f in &frames {
            let ts = OffsetDateTime::UNIX_EPOCH + f.ts + Duration::from_secs(round as u64 * 100_000);
            if let Some(link) = LinkType::from_linktype(f.linktype)
                && let Ok(Some(p)) = decode::decode(link, ts, &f.data)
            {
                decoded += u64::from(p.payload.len() as u64 != u64::MAX);
            }
        }
    }
    let base = started.elapsed();
    let base_hwm = vm_hwm_kib();

    // 2. the engine without signatures, 3. the full engine
    let replay = |engine: &mut Engine| -> (Duration, u64) {
        let started = Instant::now();
        let mut out = Output::default();
        let mut alerts = 0u64;
        for round in 0..repeat {
            for f in &frames {
                let ts = OffsetDateTime::UNIX_EPOCH + f.ts + Duration::from_secs(round as u64 * 100_000);
                engine.on_frame(f.linktype, ts, &f.data, &mut out);
                if out.records.len() > 4096 {
                    alerts += out.records.len() as u64;
                    out.records.clear();
                    out.state.clear();
                }
            }
        }
        engine.finish(&mut out);
        (started.elapsed(), alerts + out.records.len() as u64)
    };
    let load = Instant::now();
    let (ioc, skipped) = IocSet::load(&iocs)?;
    let ioc_load = load.elapsed();
    let ioc_len = ioc.len();
    let ioc = Arc::new(ioc);
    let mut engine = Engine::new(ioc.clone(), EngineConfig::default(), Vec::new());
    let (norules, norules_alerts) = replay(&mut engine);
    let norules_flows = engine.stats().flows.created;
    drop(engine);
    let norules_hwm = vm_hwm_kib();

    let load = Instant::now();
    let classification = corpus.join("Suricata_Repository/classification.config");
    let classification = classification.exists().then_some(classification);
    let (engine_rules, _report) = canhgac_agent::detect::load_rules_logged(
        &rules,
        &canhgac_agent::rules::Vars::default(),
        classification.as_deref(),
    )?;
    let rules_loaded = engine_rules.as_ref().map_or(0, |r| r.len());
    let rules_load = load.elapsed();
    let mut engine =
        Engine::new(ioc, EngineConfig { rules: engine_rules, ..EngineConfig::default() }, Vec::new());
    let (full, alerts) = replay(&mut engine);
    let stats = engine.stats();
    let full_hwm = vm_hwm_kib();

    let gbit = |d: Duration| bytes as f64 * 8.0 / d.as_secs_f64() / 1e9;
    let pps = |d: Duration| packets as f64 / d.as_secs_f64();
    println!(
        "loaded {ioc_len} indicators ({} lines skipped) in {:.2} s and {rules_loaded} rules in {:.2} s",
        skipped.len(),
        ioc_load.as_secs_f64(),
        rules_load.as_secs_f64()
    );
    println!(
        "pass                      packets      seconds     packets/s     Gbit/s     flows/s   peak RSS MiB"
    );
    let row = |name: &str, d: Duration, flows: Option<u64>, hwm: u64| {
        println!(
            "{name:<22} {packets:>10} {:>12.3} {:>13.0} {:>10.3} {:>11} {:>14.1}",
            d.as_secs_f64(),
            pps(d),
            gbit(d),
            flows.map_or("-".to_string(), |f| format!("{:.0}", f as f64 / d.as_secs_f64())),
            hwm as f64 / 1024.0
        );
    };
    row("decode only (baseline)", base, None, base_hwm.max(hwm_start));
    row("engine, no signatures", norules, Some(norules_flows), norules_hwm);
    row("full engine", full, Some(stats.flows.created), full_hwm);
    println!("engine without signatures / baseline packets/s: {:.3}", pps(norules) / pps(base));
    println!("engine / baseline packets/s: {:.3}", pps(full) / pps(base));
    println!(
        "flows {}  alerts {alerts} (without signatures {norules_alerts})  decode errors {}  (decoded {decoded})",
        stats.flows.created, stats.decode_errors
    );
    Ok(())
}

fn find_lists(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_lists(&p, out);
        } else if p.extension().is_some_and(|x| x == "txt") {
            out.push(p);
        }
    }
}
