//! Host-sensor cost: a real agent process following an authentication log
//! written at a fixed rate while watching many files; CPU time and peak
//! memory read from `/proc/PID/stat` and `/proc/PID/status`, next to the
//! same agent idle (baseline) in the same run.
//!
//! `cargo run --release --bin canhgac-bench-host -- [LINES_PER_SEC] [FILES] [SECONDS]`
//! (defaults 5000, 100000, 20).

#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::disallowed_methods)]

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use canhgac_tests::{Agent, Collector, wait_for};

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    (ticks as f64 / 100.0, hwm)
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let rate = *args.first().unwrap_or(&5000);
    let files = *args.get(1).unwrap_or(&100_000);
    let secs = *args.get(2).unwrap_or(&20);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let watched = root.join("watched");
    for d in 0..(files / 100).max(1) {
        let dir = watched.join(format!("d{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100.min(files) {
            std::fs::write(dir.join(format!("f{f:03}.conf")), format!("setting_{d}_{f} = {}\n", d * f))
                .unwrap();
        }
    }
    let log = root.join("auth.log");
    std::fs::write(&log, "").unwrap();
    let config = root.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[host]\ntimezone = \"UTC\"\n[host.auth]\nfiles = [\"{}\"]\njournal = \"off\"\n[host.fim]\npaths = [\"{}\"]\n\
             [host.listeners]\nenabled = false\n[host.processes]\nenabled = false\n[host.secrets]\nenabled = false\n",
            log.display(),
            watched.display()
        ),
    )
    .unwrap();
    let mut c = Collector::init(root);
    c.start();
    c.add_agency("BENCH", "bench");
    let token = c.token("BENCH", None);
    let mut agent = Agent::new(root, "agent");
    agent.enroll(&c, &token);
    let started = Instant::now();
    agent.start(&["--config", config.to_str().unwrap()]);
    let pid = agent_pid(&agent);
    wait_for("the baseline", Duration::from_secs(600), || {
        agent.logs().contains("baseline ready").then_some(())
    });
    let (cpu_baseline, rss_baseline) = proc_stat(pid);
    let baseline_wall = started.elapsed().as_secs_f64();
    // idle, watching the files: the reference
    let (cpu0, _) = proc_stat(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu1, rss_idle) = proc_stat(pid);
    // following the log at `rate` lines/s (guessing from 2,000 sources)
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        let mut chunk = String::new();
        while n < due {
            chunk.push_str(&format!(
                "Nov 23 10:00:00 web01 sshd[{}]: Failed password for invalid user u{} from 10.{}.{}.{} port {} ssh2\n",
                1000 + n % 30000,
                n % 97,
                n % 7,
                (n / 7) % 17,
                (n / 119) % 17,
                1024 + n % 60000
            ));
            n += 1;
        }
        f.write_all(chunk.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (cpu2, rss_peak) = proc_stat(pid);
    let busy = t0.elapsed().as_secs_f64();
    let idle_s = secs as f64;
    println!("host sensor: {files} files watched, log followed at {rate} lines/s ({n} lines in {busy:.1}s)");
    println!("| phase | CPU (% of one core) | peak RSS (MiB) |");
    println!("|-------|--------------------:|---------------:|");
    println!(
        "| initial baseline of {files} files (BLAKE3), {baseline_wall:.1}s | {:.0} | {:.0} |",
        100.0 * cpu_baseline / baseline_wall,
        rss_baseline as f64 / 1024.0
    );
    println!(
        "| idle, watching (reference) | {:.1} | {:.0} |",
        100.0 * (cpu1 - cpu0) / idle_s,
        rss_idle as f64 / 1024.0
    );
    println!(
        "| following the log at {rate} lines/s while watching | {:.1} | {:.0} |",
        100.0 * (cpu2 - cpu1) / busy,
        rss_peak as f64 / 1024.0
    );
    agent.kill();
}

fn agent_pid(agent: &Agent) -> u32 {
    // the harness keeps the child private: find it by its state directory
    let want = agent.state_dir.display().to_string();
    wait_for("the agent process", Duration::from_secs(10), || {
        std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd);
            (cmd.contains("canhgac-agent") && cmd.contains(&want) && cmd.contains("run")).then_some(pid)
        })
    })
}
