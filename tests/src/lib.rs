//! Harness for end-to-end tests: real binaries in real processes, real TLS,
//! real sled, on loopback.
//!
//! Binaries are taken from the target directory next to the test
//! executable (`cargo test --workspace` builds them first).

#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::disallowed_methods)]

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Path of a workspace binary built alongside the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so that the binaries are built",
        path.display()
    );
    path
}

/// The workspace root (for fixtures under deploy/).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends SIGTERM to a child and waits for it; its exit code (-1 when a
/// signal ended it).
pub fn terminate(child: &mut Child, timeout: Duration) -> i32 {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -TERM {}", child.id());
    let status = wait_for("the process to exit after SIGTERM", timeout, || child.try_wait().unwrap());
    status.code().unwrap_or(-1)
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A collector data directory and, when started, its process.
pub struct Collector {
    pub dir: PathBuf,
    pub port: u16,
    pub pin: String,
    pub config: Option<PathBuf>,
    /// `serve --listen` address when not 127.0.0.1:`port` (e.g. 0.0.0.0
    /// for agents in another network namespace).
    pub listen: Option<SocketAddr>,
    child: Option<Child>,
    starts: u32,
    /// Log file prefix: `serve` for the first process on a data
    /// directory, another for each replica sharing it.
    log_name: String,
}

impl Collector {
    /// `canhgac-collector init` for 127.0.0.1 on a free port.
    pub fn init(root: &Path) -> Collector {
        Collector::init_names(root, &[])
    }

    /// [`Collector::init`] with more server names in its certificate (the
    /// address agents in another network namespace reach it at).
    pub fn init_names(root: &Path, names: &[&str]) -> Collector {
        let dir = root.join("collector");
        let port = free_port();
        let mut cmd = Command::new(bin("canhgac-collector"));
        cmd.args(["init", "--server-name", "127.0.0.1", "--server-name", "localhost"]);
        for n in names {
            cmd.args(["--server-name", n]);
        }
        let out = cmd
            .arg("--address")
            .arg(format!("https://127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .unwrap();
        let stdout = check(&out, "canhgac-collector init");
        let pin = stdout.lines().last().unwrap().trim().to_string();
        assert_eq!(pin.len(), 64, "last line of init is the pin: {stdout}");
        Collector {
            dir,
            port,
            pin,
            config: None,
            listen: None,
            child: None,
            starts: 0,
            log_name: "serve".into(),
        }
    }

    /// Another `serve` process on the same data directory and
    /// configuration (a replica when the store is PostgreSQL), on a port
    /// of its own; not started.
    pub fn replica(&self) -> Collector {
        let port = free_port();
        Collector {
            dir: self.dir.clone(),
            port,
            pin: self.pin.clone(),
            config: self.config.clone(),
            listen: self.listen,
            child: None,
            starts: 0,
            log_name: format!("replica-{port}"),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn profile(&self) -> PathBuf {
        self.dir.join("operator.profile")
    }

    /// Writes a collector config file with extra TOML (sections allowed).
    pub fn set_config(&mut self, extra: &str) {
        let path = self.dir.join("collector.toml");
        std::fs::write(&path, format!("version = 1\n{extra}\n")).unwrap();
        self.config = Some(path);
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "collector already running");
        self.starts += 1;
        std::fs::create_dir_all(self.log_dir()).unwrap();
        let log =
            std::fs::File::create(self.log_dir().join(format!("{}-{}.log", self.log_name, self.starts)))
                .unwrap();
        let mut cmd = Command::new(bin("canhgac-collector"));
        let listen = self.listen.unwrap_or_else(|| self.addr());
        cmd.arg("serve").arg("--data-dir").arg(&self.dir).arg("--listen").arg(listen.to_string());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd.env("RUST_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let addr = self.addr();
        wait_for("the collector to listen", Duration::from_secs(20), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM (what systemd sends); waits for the exit and returns its code.
    pub fn terminate(&mut self, timeout: Duration) -> i32 {
        let mut child = self.child.take().expect("collector not running");
        terminate(&mut child, timeout)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The running collector's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where the serve logs go: beside the data directory, not in it, so
    /// that a test filling the data directory's disk still reads them.
    fn log_dir(&self) -> PathBuf {
        self.dir.with_extension("logs")
    }

    /// All serve logs so far, for assertions and failure messages.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.log_dir().join(format!("{}-{i}.log", self.log_name)))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `canhgac` with this collector's admin profile.
    pub fn cli_output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("canhgac"));
        cmd.arg("--profile").arg(self.profile());
        if self.log_name != "serve" {
            // the profile names the first process's address
            cmd.arg("--collector").arg(self.url());
        }
        cmd.args(args).env_remove("CANHGAC_PROFILE").env_remove("CANHGAC_COLLECTOR").output().unwrap()
    }

    pub fn cli(&self, args: &[&str]) -> String {
        check(&self.cli_output(args), &format!("canhgac {}", args.join(" ")))
    }

    pub fn add_agency(&self, code: &str, name: &str) {
        self.cli(&["agency", "add", "--code", code, "--name", name]);
    }

    pub fn token(&self, agency: &str, ttl: Option<&str>) -> String {
        let mut args = vec!["token", "create", "--agency", agency];
        if let Some(t) = ttl {
            args.extend(["--ttl", t]);
        }
        self.cli(&args).lines().last().unwrap().trim().to_string()
    }

    /// Every stored alert, as EVE JSON.
    pub fn alerts(&self) -> Vec<Value> {
        self.cli(&["alerts", "list", "--json", "--limit", "1000000"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn agents(&self) -> Vec<Value> {
        self.cli(&["agents", "list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- collector logs ----\n{}", self.logs());
        }
        self.kill();
    }
}

/// An agent state directory and, when running, its process.
pub struct Agent {
    pub state_dir: PathBuf,
    pub args: Vec<String>,
    /// A command the agent runs under (`ip netns exec NS`), for enrollment
    /// and runs; it must exec the agent, so that its id is the agent's.
    pub wrapper: Vec<String>,
    /// Environment for enrollment and runs (e.g. libfaketime's).
    pub env: Vec<(String, String)>,
    /// The collector's address when not its `url()` (another namespace).
    pub collector_url: Option<String>,
    child: Option<Child>,
    runs: u32,
}

impl Agent {
    pub fn new(root: &Path, name: &str) -> Agent {
        Agent {
            state_dir: root.join(name),
            args: Vec::new(),
            wrapper: Vec::new(),
            env: Vec::new(),
            collector_url: None,
            child: None,
            runs: 0,
        }
    }

    /// `canhgac-agent` under the wrapper, with the environment.
    fn command(&self) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin("canhgac-agent"));
                c
            }
            None => Command::new(bin("canhgac-agent")),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn enroll_output(&self, collector: &Collector, token: &str, extra: &[&str]) -> Output {
        let url = self.collector_url.clone().unwrap_or_else(|| collector.url());
        self.command()
            .args(["enroll", "--collector", &url, "--token", token, "--ca-pin", &collector.pin])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(extra)
            .output()
            .unwrap()
    }

    pub fn enroll(&self, collector: &Collector, token: &str) {
        check(&self.enroll_output(collector, token, &[]), "canhgac-agent enroll");
    }

    pub fn agent_id(&self) -> String {
        let text = std::fs::read_to_string(self.state_dir.join("identity.toml")).unwrap();
        let v: toml_lite::Doc = toml_lite::parse(&text);
        v.get("agent_id").unwrap()
    }

    /// Starts `canhgac-agent run --state-dir DIR ARGS...`.
    pub fn start<S: AsRef<str>>(&mut self, args: &[S]) {
        self.args = args.iter().map(|s| s.as_ref().to_string()).collect();
        self.restart();
    }

    /// Starts again with the same arguments.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        self.runs += 1;
        let log = std::fs::File::create(self.state_dir.join(format!("run-{}.log", self.runs))).unwrap();
        let child = self
            .command()
            .arg("run")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM (what systemd sends); waits for the exit and returns its code.
    pub fn terminate(&mut self, timeout: Duration) -> i32 {
        let mut child = self.child.take().expect("agent not running");
        terminate(&mut child, timeout)
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let child = self.child.as_mut().expect("agent not running");
        let status = wait_for("the agent to exit", timeout, || child.try_wait().unwrap());
        self.child = None;
        status.code().unwrap_or(-1)
    }

    /// Exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().unwrap()?;
        self.child = None;
        Some(status.code().unwrap_or(-1))
    }

    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|i| std::fs::read_to_string(self.state_dir.join(format!("run-{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- agent {} logs ----\n{}", self.state_dir.display(), self.logs());
        }
        self.kill();
    }
}

/// Just enough TOML reading for `identity.toml` (flat `key = "value"`).
pub mod toml_lite {
    pub struct Doc(Vec<(String, String)>);

    impl Doc {
        pub fn get(&self, key: &str) -> Option<String> {
            self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        }
    }

    pub fn parse(text: &str) -> Doc {
        Doc(text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            })
            .collect())
    }
}

/// Writes a pcap file of raw IPv4 frames (LINKTYPE_RAW), one second apart.
pub fn write_raw_pcap(path: &Path, frames: &[Vec<u8>]) {
    write_raw_pcap_at(path, frames, Duration::from_secs(1_700_000_000));
}

/// [`write_raw_pcap`] with the first packet at `start` (since the epoch).
pub fn write_raw_pcap_at(path: &Path, frames: &[Vec<u8>], start: Duration) {
    use pcap_file::{
        DataLink,
        pcap::{PcapHeader, PcapPacket, PcapWriter},
    };
    let file = std::fs::File::create(path).unwrap();
    let header = PcapHeader { datalink: DataLink::RAW, ..Default::default() };
    let mut w = PcapWriter::with_header(file, header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = start + Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f)).unwrap();
    }
    w.into_writer().flush().unwrap();
}

/// A DNS query for `name` from 10.0.0.5:`sport` to 10.0.0.53:53, raw IPv4.
pub fn dns_query(name: &str, id: u16, sport: u16) -> Vec<u8> {
    let mut m = vec![(id >> 8) as u8, id as u8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 5], [10, 0, 0, 53], 64)
        .udp(sport, 53)
        .write(&mut v, &m)
        .unwrap();
    v
}

/// `n` DNS queries, each for a distinct subdomain of `parent`: n alerts
/// with an indicator list holding `parent`.
pub fn dns_burst(parent: &str, n: usize) -> (Vec<Vec<u8>>, Vec<String>) {
    let names: Vec<String> = (0..n).map(|i| format!("q{i}.{parent}")).collect();
    let frames = names
        .iter()
        .enumerate()
        .map(|(i, name)| dns_query(name, i as u16, 1024 + (i % 60000) as u16))
        .collect();
    (frames, names)
}

/// A generated replay: `n` DNS queries, each for a distinct subdomain of
/// `evil.example`, the indicator list that flags every one of them, and an
/// agent configuration file.
pub struct Burst {
    pub pcap: PathBuf,
    pub ioc: PathBuf,
    pub config: PathBuf,
    pub names: Vec<String>,
}

impl Burst {
    /// `agent_toml` is appended to `version = 1` in the agent configuration.
    pub fn new(dir: &Path, n: usize, agent_toml: &str) -> Burst {
        let (frames, names) = dns_burst("evil.example", n);
        let pcap = dir.join("burst.pcap");
        write_raw_pcap(&pcap, &frames);
        let ioc = dir.join("ioc.txt");
        std::fs::write(&ioc, "evil.example\n").unwrap();
        let config = dir.join("agent.toml");
        std::fs::write(&config, format!("version = 1\n{agent_toml}\n")).unwrap();
        Burst { pcap, ioc, config, names }
    }

    /// `canhgac-agent run` arguments for this replay, then `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = ["--config", "--pcap", "--ioc"]
            .iter()
            .zip([&self.config, &self.pcap, &self.ioc])
            .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    /// (names of the burst missing from `alerts`, names stored more than
    /// once, alerts): `(0, 0, n)` when every record arrived exactly once.
    pub fn delivery(&self, alerts: &[Value]) -> (usize, usize, usize) {
        let got = rrnames(alerts);
        let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for n in &got {
            *counts.entry(n.as_str()).or_default() += 1;
        }
        let missing = self.names.iter().filter(|n| !counts.contains_key(n.as_str())).count();
        let repeated = counts.values().filter(|&&k| k > 1).count();
        (missing, repeated, got.len())
    }
}

/// The `rrname` of each DNS alert.
pub fn rrnames(alerts: &[Value]) -> Vec<String> {
    alerts.iter().filter_map(|a| a["dns"]["query"][0]["rrname"].as_str().map(String::from)).collect()
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux
    Duration::from_millis(ticks * 10)
}

/// Whether the tests run as root (namespaces, raw capture, sshd need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A tmpfs mounted for a test's life, unmounted on drop. Mounting needs
/// root (tests run as root here and in CI): without it the test fails
/// saying so, it does not skip.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(is_root(), "this test mounts a tmpfs and must run as root (CI does)");
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Changes the size (e.g. to give space back).
    pub fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "remount {}", self.0.display());
    }

    /// Fills the file system with `filler` until a write fails; returns it.
    pub fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
