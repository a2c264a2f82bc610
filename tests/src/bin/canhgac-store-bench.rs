//! `canhgac-store-bench`: filtered alert listing on a large real store.
//!
//! Fills a sled store (the collector's own `Store`, same code path as
//! ingest: one transaction per batch with both indexes) with N alerts
//! (default 1,000,000) from 20 agencies spread over 30 days, then times
//! the first page (100 alerts, newest first) of filtered listings, next to
//! a baseline measured in the same run: the unfiltered first page.
//! Each query runs on a freshly reopened store (cold cache) and then
//! warm; the median of the warm runs is shown.
//!
//! Usage: `cargo run --release --bin canhgac-store-bench -- [ALERTS] [AGENCIES]`

#![allow(clippy::print_stderr)]

use std::time::{Duration, Instant};

use canhgac_collector::store::{AlertQuery, Incoming, Store};

const DAY_US: i64 = 86_400_000_000;

fn eve(i: u64, agency: &str, severity: u32, time_us: i64) -> String {
    format!(
        concat!(
            r#"{{"timestamp":"{t}","flow_id":{i},"event_type":"alert","src_ip":"203.0.113.{a}","src_port":{sp},"#,
            r#""dest_ip":"198.51.100.{b}","dest_port":443,"proto":"TCP","community_id":"1:bench{i}=","#,
            r#""alert":{{"action":"allowed","gid":1,"signature_id":9000002,"rev":1,"#,
            r#""signature":"CANHGAC IOC traffic from listed address 203.0.113.{a} (national.txt)","#,
            r#""category":"Potentially Bad Traffic","severity":{s}}},"#,
            r#""canhgac":{{"agent_id":"agent-{ag}","agency":"{ag}","hostname":"web01","detector":"ioc","#,
            r#""technique":"T1071","indicator":"203.0.113.{a}","indicator_type":"ip","list":"national.txt","matched":"src_ip"}}}}"#
        ),
        t = time_us,
        i = i,
        a = i % 250,
        b = i % 200,
        sp = 1024 + i % 60000,
        s = severity,
        ag = agency,
    )
}

/// Reopens the store; sled's flusher thread may hold the lock for a moment
/// after the previous handle is dropped.
#[allow(clippy::disallowed_methods)]
fn reopen(path: &std::path::Path) -> anyhow::Result<Store> {
    for _ in 0..250 {
        if let Ok(s) = Store::open(path) {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Store::open(path)?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let agencies: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let store = Store::open(&path)?;
    let now_us = 1_800_000_000 * 1_000_000i64;
    let start_us = now_us - 30 * DAY_US;
    let step = (30 * DAY_US) / n as i64;
    let batch = 100u64;
    let started = Instant::now();
    let mut seq = vec![0u64; agencies as usize];
    let mut i = 0u64;
    while i < n {
        // One batch per agency in turn, as agents deliver them.
        let a = (i / batch) % agencies;
        let agency = format!("AG{a:02}");
        let mut recs = Vec::with_capacity(batch as usize);
        for j in 0..batch.min(n - i) {
            let k = i + j;
            seq[a as usize] += 1;
            let severity = 1 + (k % 4) as u32;
            let time_us = start_us + k as i64 * step;
            let eve_json = eve(k, &agency, severity, time_us);
            // typed facts as an agent sends them with each alert
            let value: serde_json::Value = serde_json::from_str(&eve_json)?;
            let facts = Some(Box::new(canhgac_collector::incident::facts::legacy(&value, &|_| false)));
            recs.push(Incoming::Valid {
                seq: seq[a as usize],
                alert: true,
                severity,
                time_us,
                eve_json,
                facts,
                origin: None,
            });
        }
        i += recs.len() as u64;
        store.ingest(&format!("agent-{agency}"), &agency, now_us, &recs)?;
    }
    store.flush_blocking()?;
    let fill = started.elapsed();
    let size = store.size_on_disk()?;
    drop(store);
    eprintln!(
        "filled {n} alerts ({agencies} agencies, 30 days) in {:.1} s ({:.0} alerts/s), {:.0} MiB on disk",
        fill.as_secs_f64(),
        n as f64 / fill.as_secs_f64(),
        size as f64 / 1048576.0
    );

    let mid = start_us + 15 * DAY_US;
    let queries: Vec<(&str, AlertQuery)> = vec![
        ("baseline: no filter", AlertQuery { limit: 100, ..Default::default() }),
        ("agency", AlertQuery { agency: Some("AG07".into()), limit: 100, ..Default::default() }),
        (
            "agency + one day",
            AlertQuery {
                agency: Some("AG07".into()),
                since_us: Some(mid),
                until_us: Some(mid + DAY_US),
                limit: 100,
                ..Default::default()
            },
        ),
        (
            "agency + one day + severity 1",
            AlertQuery {
                agency: Some("AG07".into()),
                since_us: Some(mid),
                until_us: Some(mid + DAY_US),
                max_severity: Some(1),
                limit: 100,
                ..Default::default()
            },
        ),
        (
            "agency + 7 days, 3rd page",
            AlertQuery {
                agency: Some("AG13".into()),
                since_us: Some(mid - 7 * DAY_US),
                until_us: Some(mid),
                limit: 100,
                ..Default::default()
            },
        ),
        (
            "one day, all agencies",
            AlertQuery {
                since_us: Some(mid),
                until_us: Some(mid + DAY_US),
                limit: 100,
                ..Default::default()
            },
        ),
    ];
    println!(
        "| first page (up to 100 alerts), {n} stored | alerts | cold (ms) | warm median (ms) | ratio to baseline |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut baseline = None;
    for (name, q) in queries {
        let store = reopen(&path)?;
        let third_page = name.contains("3rd page");
        let run = |store: &Store| -> anyhow::Result<(Duration, usize)> {
            let t = Instant::now();
            let mut q = q.clone();
            let (mut page, mut next) = store.list_alerts(&q)?;
            if third_page {
                for _ in 0..2 {
                    q.after = next;
                    (page, next) = store.list_alerts(&q)?;
                }
            }
            Ok((t.elapsed(), page.len()))
        };
        let (cold, len) = run(&store)?;
        anyhow::ensure!(len > 0, "{name}: empty page");
        let warm = median((0..21).map(|_| run(&store).map(|r| r.0)).collect::<anyhow::Result<Vec<_>>>()?);
        let base = *baseline.get_or_insert(warm);
        println!(
            "| {name} | {len} | {:.2} | {:.3} | {:.2} |",
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            warm.as_secs_f64() / base.as_secs_f64()
        );
    }
    Ok(())
}
