//! `canhgac-bench-ioc`: loading and matching millions of indicators.
//!
//! Generates N indicators (half domains, a quarter IPv4 addresses, an
//! eighth URLs, an eighth CIDRs) in a plain list, then measures, in the same
//! run: reading the file line by line (baseline), loading it into an
//! indicator set, the set's memory, and lookups per second.
//!
//! Usage: `cargo run --release --bin canhgac-bench-ioc -- [N]` (default
//! 2000000).

#![allow(clippy::print_stderr)]

use std::{
    io::{BufRead as _, Write as _},
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use canhgac_agent::detect::IocSet;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(2_000_000);
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("indicators.txt");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(w, "# generated indicator list for canhgac-bench-ioc")?;
        for i in 0..n {
            let r = next();
            match i % 8 {
                0..=3 => writeln!(
                    w,
                    "{:x}{}.example-{}.{}",
                    r,
                    i,
                    r % 1000,
                    ["com", "net", "vn", "info"][(r % 4) as usize]
                )?,
                4 | 5 => writeln!(w, "{}", Ipv4Addr::from(r as u32))?,
                6 => writeln!(w, "http://{:x}.example.org/gate{}.php", r, i)?,
                _ => writeln!(w, "{}/24", Ipv4Addr::from((r as u32) & 0xffff_ff00))?,
            }
        }
    }
    let size = std::fs::metadata(&path)?.len();

    let started = Instant::now();
    let mut lines = 0usize;
    for line in std::io::BufReader::new(std::fs::File::open(&path)?).lines() {
        lines += usize::from(!line?.is_empty());
    }
    let read = started.elapsed();

    let rss_before = rss_kib();
    let started = Instant::now();
    let (set, errors) = IocSet::load(std::slice::from_ref(&path))?;
    let load = started.elapsed();
    let rss_after = rss_kib();
    anyhow::ensure!(errors.is_empty(), "{} lines refused, e.g. {}", errors.len(), errors[0]);

    let lookups = 1_000_000u64;
    let names: Vec<String> =
        (0..lookups / 2).map(|i| format!("www.{:x}{}.example-1.com", next(), i)).collect();
    let ips: Vec<IpAddr> = (0..lookups / 2).map(|_| IpAddr::V4(Ipv4Addr::from(next() as u32))).collect();
    let started = Instant::now();
    let mut hits = 0u64;
    for (name, ip) in names.iter().zip(&ips) {
        hits += u64::from(set.match_domain(name).is_some());
        hits += u64::from(set.match_ip(*ip).is_some());
    }
    let lookup = started.elapsed();

    println!("indicators in the file        {lines} ({:.1} MiB)", size as f64 / 1048576.0);
    println!("indicators loaded             {} (duplicates {})", set.len(), set.duplicates);
    println!("read lines only (baseline)    {:.3} s", read.as_secs_f64());
    println!(
        "load into the set             {:.3} s  ({:.1}x the baseline, {:.0} indicators/s)",
        load.as_secs_f64(),
        load.as_secs_f64() / read.as_secs_f64(),
        set.len() as f64 / load.as_secs_f64()
    );
    println!(
        "memory of the set             {:.1} MiB ({:.0} bytes per indicator; RSS grew {:.1} MiB)",
        set.memory_bytes() as f64 / 1048576.0,
        set.memory_bytes() as f64 / set.len() as f64,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0
    );
    println!(
        "lookups                       {:.0} per second ({} hits of {lookups})",
        lookups as f64 / lookup.as_secs_f64(),
        hits
    );
    Ok(())
}
