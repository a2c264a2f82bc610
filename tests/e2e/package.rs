//! The Debian packages (README "Install with the Debian packages"): `cargo
//! deb` packages the debug binaries this test run built, `dpkg -i` installs
//! both packages, the installed units pass `systemd-analyze verify`, both
//! services start the way their units start them (user, groups,
//! capabilities, no new privileges, `ExecStartPre=` then `ExecStart=` from
//! the installed unit; only the configuration is a copy pointing at
//! temporary directories), the agent enrolls with a token made by the
//! installed `canhgac` and streams a replay whose alerts `canhgac alerts
//! list` shows, and `dpkg --purge` takes the packages away again.
//!
//! Needs root (dpkg, system users; CI runs as root) and cargo-deb
//! (`.ci/run` installs it). systemd need not be PID 1: nothing here asks
//! systemd to start anything, which is also what the maintainer scripts
//! must survive.

use std::{
    collections::HashMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use canhgac_tests::{bin, free_port, is_root, terminate, wait_for, workspace};
use serde_json::Value;

const PACKAGES: [&str; 2] = ["canhgac-agent", "canhgac-collector"];
const USERS: [&str; 2] = ["canhgac-agent", "canhgac"];
const STATE_DIRS: [&str; 2] = ["/var/lib/canhgac-agent", "/var/lib/canhgac-collector"];
const UNIT_DIR: &str = "/usr/lib/systemd/system";

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

fn exists_user(name: &str) -> bool {
    Command::new("getent").args(["passwd", name]).output().unwrap().status.success()
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "installed")
}

/// Puts the machine back as it was, also when the test fails: purges the
/// packages, deletes the system users that were not there before and the
/// state directories (asserted absent before the test).
struct Machine {
    users_before: Vec<bool>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").arg("--purge").args(PACKAGES).output();
        for (user, before) in USERS.iter().zip(&self.users_before) {
            if !before && exists_user(user) {
                let _ = Command::new("deluser").args(["--system", "--quiet", user]).output();
                let _ = Command::new("delgroup").args(["--system", "--quiet", user]).output();
            }
        }
        for dir in STATE_DIRS {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A process started like its unit starts it; killed on drop, its log
/// printed when the test fails.
struct Service {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        let status = self.child.as_mut().unwrap().try_wait().unwrap();
        assert!(status.is_none(), "{} exited ({status:?}):\n{}", self.name, self.logs());
    }

    fn stop(&mut self, timeout: Duration) -> i32 {
        terminate(self.child.as_mut().unwrap(), timeout)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.logs());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `[Service]` settings of an installed unit that say how it runs.
struct Unit {
    path: PathBuf,
    keys: HashMap<String, Vec<String>>,
}

impl Unit {
    fn load(name: &str) -> Unit {
        let path = Path::new(UNIT_DIR).join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut keys: HashMap<String, Vec<String>> = HashMap::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
            } else if section == "[Service]"
                && !line.starts_with('#')
                && let Some((k, v)) = line.split_once('=')
            {
                keys.entry(k.trim().to_string()).or_default().push(v.trim().to_string());
            }
        }
        Unit { path, keys }
    }

    fn one(&self, key: &str) -> Option<&str> {
        let v = self.keys.get(key)?;
        assert_eq!(v.len(), 1, "{}: one {key}= expected", self.path.display());
        Some(&v[0])
    }

    fn words(&self, key: &str) -> Vec<String> {
        self.keys
            .get(key)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split_whitespace())
            .map(String::from)
            .collect()
    }

    /// An `Exec*=` line as arguments, the unit's configuration path
    /// replaced by `config`. The units use no prefixes, quotes or
    /// specifiers (asserted).
    fn exec(&self, key: &str, unit_config: &str, config: &Path) -> Vec<String> {
        let line = self.one(key).unwrap_or_else(|| panic!("{} has no {key}=", self.path.display()));
        assert!(line.starts_with("/usr/bin/"), "{key}={line}: an installed /usr/bin program, no prefix");
        assert!(!line.contains(['"', '\'', '%', '$']), "{key}={line}: no quoting or specifiers");
        assert!(line.contains(unit_config), "{key}={line} names {unit_config}");
        let line = line.replace(unit_config, config.to_str().unwrap());
        line.split_whitespace().map(String::from).collect()
    }

    /// `setpriv` arguments that give a process what the unit gives it:
    /// `User=`, `Group=`, the user's groups plus `SupplementaryGroups=`,
    /// `AmbientCapabilities=` within `CapabilityBoundingSet=` (an empty one
    /// drops every capability), `NoNewPrivileges=`.
    fn credentials(&self) -> Vec<String> {
        let user = self.one("User").expect("User=");
        let group = self.one("Group").unwrap_or(user);
        let mut groups: Vec<String> =
            stdout(Command::new("id").args(["-Gn", user])).split_whitespace().map(String::from).collect();
        groups.extend(self.words("SupplementaryGroups"));
        let caps = |key: &str| -> String {
            self.words(key)
                .iter()
                .map(|c| format!(",+{}", c.strip_prefix("CAP_").unwrap().to_lowercase()))
                .collect()
        };
        let ambient = caps("AmbientCapabilities");
        let bounding = caps("CapabilityBoundingSet");
        assert!(
            self.keys.contains_key("CapabilityBoundingSet"),
            "{}: no CapabilityBoundingSet=",
            self.path.display()
        );
        let mut args = vec![
            format!("--reuid={user}"),
            format!("--regid={group}"),
            format!("--groups={}", groups.join(",")),
            format!("--inh-caps=-all{ambient}"),
            format!("--bounding-set=-all{bounding}"),
        ];
        if !ambient.is_empty() {
            args.push(format!("--ambient-caps={}", &ambient[1..]));
        }
        if self.one("NoNewPrivileges") == Some("yes") {
            args.push("--no-new-privs".into());
        }
        args
    }

    fn command(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new("setpriv");
        // systemd's defaults for a system service: `/` as the working
        // directory, a bare environment
        cmd.args(self.credentials())
            .arg("--")
            .args(argv)
            .current_dir("/")
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        cmd
    }

    /// `ExecStartPre=` (must succeed), then `ExecStart=` in the
    /// background with its log in `log`.
    fn start(&self, name: &'static str, unit_config: &str, config: &Path, log: PathBuf) -> Service {
        run(&mut self.command(&self.exec("ExecStartPre", unit_config, config)));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command(&self.exec("ExecStart", unit_config, config))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Service { name, child: Some(child), log }
    }
}

/// `(mode, owner, path)` of each entry of a package.
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    stdout(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[5].trim_start_matches('.').to_string())
        })
        .collect()
}

fn assert_entry(entries: &[(String, String, String)], path: &str, mode: &str, deb: &Path) {
    let e = entries.iter().find(|e| e.2 == path);
    assert!(
        e.is_some_and(|e| e.0 == mode && (e.1 == "root/root" || e.1 == "0/0")),
        "{}: {path} should be {mode} owned by root, found {e:?}",
        deb.display()
    );
}

/// A field of `/proc/PID/status`.
fn proc_status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_once(':').unwrap().1.trim().to_string()
}

fn uid_of(user: &str) -> u32 {
    stdout(Command::new("id").args(["-u", user])).trim().parse().unwrap()
}

/// Replaces the first line equal to `line` of an installed configuration
/// file.
fn set_line(text: &str, line: &str, with: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let i = lines.iter().position(|l| *l == line);
    let i = i.unwrap_or_else(|| panic!("the installed configuration has no line `{line}`"));
    lines[i] = with;
    lines.join("\n") + "\n"
}

#[test]
fn debian_packages_install_verify_start_enroll_stream_and_purge() {
    assert!(
        is_root(),
        "this test installs Debian packages with dpkg and creates system users: run it as root (CI does)"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let have_deb = Command::new(&cargo).args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
    assert!(
        have_deb,
        "cargo-deb is needed: `cargo install cargo-deb --version 3.8.0 --locked` (.ci/run does)"
    );
    for pkg in PACKAGES {
        assert!(!installed(pkg), "{pkg} is already installed here; this test installs and purges it");
    }
    for f in ["/etc/canhgac/agent.toml", "/etc/canhgac/collector.toml"] {
        assert!(!Path::new(f).exists(), "{f} exists (an earlier install?); this test installs and purges it");
    }
    for d in STATE_DIRS {
        assert!(!Path::new(d).exists(), "{d} exists (an earlier install?); this test installs and purges it");
    }
    let started = Instant::now();
    let _machine = Machine { users_before: USERS.iter().map(|u| exists_user(u)).collect() };
    let tmp = tempfile::tempdir().unwrap();
    // the services' users must reach their directories under it
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // 1. Both packages from the binaries of this build (`<target>/debug`):
    // no second, release build.
    let target = bin("canhgac-agent").parent().unwrap().parent().unwrap().to_path_buf();
    let debs = tmp.path().join("debs");
    std::fs::create_dir(&debs).unwrap();
    let mut deb = HashMap::new();
    for pkg in PACKAGES {
        run(Command::new(&cargo)
            .args(["deb", "--no-build", "--profile", "dev", "--fast", "--locked", "-p", pkg, "--output"])
            .arg(&debs)
            .current_dir(workspace())
            .env("CARGO_TARGET_DIR", &target));
        let file = std::fs::read_dir(&debs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&format!("{pkg}_")))
            .unwrap_or_else(|| panic!("no {pkg}_*.deb in {}", debs.display()));
        deb.insert(pkg, file);
    }
    let packaged = started.elapsed();

    // 2. What is in them.
    for (pkg, bins, config) in [
        ("canhgac-agent", &["canhgac-agent"][..], "agent.toml"),
        ("canhgac-collector", &["canhgac-collector", "canhgac"][..], "collector.toml"),
    ] {
        let file = &deb[pkg];
        let fields = stdout(Command::new("dpkg-deb").arg("--field").arg(file).args(["Package", "Depends"]));
        assert!(fields.contains(&format!("Package: {pkg}\n")), "{fields}");
        assert!(
            fields.contains("adduser") && fields.contains("libc6"),
            "{pkg} depends on adduser and libc6: {fields}"
        );
        let entries = contents(file);
        for b in bins {
            assert_entry(&entries, &format!("/usr/bin/{b}"), "-rwxr-xr-x", file);
        }
        assert_entry(&entries, &format!("/etc/canhgac/{config}"), "-rw-r--r--", file);
        assert_entry(&entries, &format!("{UNIT_DIR}/{pkg}.service"), "-rw-r--r--", file);
        let conffiles = stdout(Command::new("dpkg-deb").arg("--info").arg(file).arg("conffiles"));
        assert_eq!(conffiles.trim(), format!("/etc/canhgac/{config}"), "{pkg}: conffiles");
        let postinst = stdout(Command::new("dpkg-deb").arg("--info").arg(file).arg("postinst"));
        assert!(
            postinst.contains("adduser --system") && postinst.contains("deb-systemd-helper"),
            "{postinst}"
        );
        assert!(!postinst.contains("#DEBHELPER#"), "the systemd fragments replaced the token:\n{postinst}");
        // no package owns the state directory (its postinst makes it)
        assert!(!entries.iter().any(|e| e.2.starts_with("/var/")), "{pkg}: {entries:?}");
    }

    // 3. Install, as on a fresh machine: systemd is not asked to do anything
    // (ps -p 1 is not systemd here and in CI) and nothing fails for it.
    run(Command::new("dpkg").arg("-i").arg(&deb["canhgac-agent"]).arg(&deb["canhgac-collector"]));
    for pkg in PACKAGES {
        assert!(installed(pkg), "{pkg} installed");
    }
    for (user, home) in [("canhgac-agent", STATE_DIRS[0]), ("canhgac", STATE_DIRS[1])] {
        let pw = stdout(Command::new("getent").args(["passwd", user]));
        let f: Vec<&str> = pw.trim().split(':').collect();
        let uid: u32 = f[2].parse().unwrap();
        assert!(uid > 0 && uid < 1000, "{user} is a system user: {pw}");
        assert_eq!((f[5], f[6]), (home, "/usr/sbin/nologin"), "{pw}");
        assert!(
            Command::new("getent").args(["group", user]).output().unwrap().status.success(),
            "group {user}"
        );
        let m = std::fs::metadata(home).unwrap();
        assert!(
            m.is_dir() && m.uid() == uid && m.mode() & 0o7777 == 0o700,
            "{home}: owner {} mode {:o}",
            m.uid(),
            m.mode()
        );
    }
    let deploy = workspace().join("deploy");
    for (installed, source) in [
        ("/etc/canhgac/agent.toml", "agent.toml"),
        ("/etc/canhgac/collector.toml", "collector.toml"),
        ("/usr/lib/systemd/system/canhgac-agent.service", "canhgac-agent.service"),
        ("/usr/lib/systemd/system/canhgac-collector.service", "canhgac-collector.service"),
    ] {
        assert_eq!(
            std::fs::read(installed).unwrap_or_else(|e| panic!("{installed}: {e}")),
            std::fs::read(deploy.join(source)).unwrap(),
            "{installed} is deploy/{source}"
        );
    }
    for b in ["canhgac-agent", "canhgac-collector", "canhgac"] {
        let m = std::fs::metadata(format!("/usr/bin/{b}")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o755, "/usr/bin/{b}");
    }
    // not enabled: neither can start before `init` / `enroll`
    for pkg in PACKAGES {
        let link = format!("/etc/systemd/system/multi-user.target.wants/{pkg}.service");
        assert!(!Path::new(&link).exists(), "{link}: the package enables nothing");
    }

    // 4. The installed units verify clean.
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .args(PACKAGES.map(|p| format!("{UNIT_DIR}/{p}.service")))
        .output()
        .expect("systemd-analyze (Debian's systemd) is needed");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");

    // 5. The collector, initialised as README says (as its user), then
    // started as its unit starts it.
    let cdir = tmp.path().join("collector");
    let adir = tmp.path().join("agent");
    let etc = tmp.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    for (dir, user) in [(&cdir, "canhgac"), (&adir, "canhgac-agent")] {
        // what StateDirectory= (and the postinst) make
        run(Command::new("install").args(["-d", "-m", "0700", "-o", user, "-g", user]).arg(dir));
    }
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let init = stdout(
        Command::new("runuser")
            .current_dir("/")
            .args(["-u", "canhgac", "--", "/usr/bin/canhgac-collector", "init", "--data-dir"])
            .arg(&cdir)
            .args(["--server-name", "127.0.0.1", "--address", &url]),
    );
    let pin = init.lines().last().unwrap().trim().to_string();
    assert_eq!(pin.len(), 64, "init prints the CA pin last: {init}");
    let ccfg = etc.join("collector.toml");
    let text = std::fs::read_to_string("/etc/canhgac/collector.toml").unwrap();
    let text = set_line(&text, r#"data_dir = "/var/lib/canhgac-collector""#, &format!("data_dir = {cdir:?}"));
    let text = set_line(&text, r#"listen = "0.0.0.0:7443""#, &format!(r#"listen = "127.0.0.1:{port}""#));
    std::fs::write(&ccfg, text).unwrap();
    let cunit = Unit::load("canhgac-collector.service");
    assert_eq!(cunit.one("User"), Some("canhgac"));
    let mut collector =
        cunit.start("collector", "/etc/canhgac/collector.toml", &ccfg, tmp.path().join("collector.log"));
    wait_for("the collector to listen", Duration::from_secs(30), || {
        collector.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let pid = collector.pid();
    assert_eq!(
        proc_status(pid, "Uid").split_whitespace().next(),
        Some(uid_of("canhgac").to_string().as_str())
    );
    for cap in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, cap), "0000000000000000", "collector {cap}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");

    // 6. An agency and a token with the installed CLI and the operator
    // profile init wrote; enrollment as the agent's user.
    let profile = cdir.join("operator.profile");
    let cli = |args: &[&str]| {
        stdout(
            Command::new("/usr/bin/canhgac")
                .arg("--profile")
                .arg(&profile)
                .args(args)
                .env_remove("CANHGAC_PROFILE"),
        )
    };
    cli(&["agency", "add", "--code", "SO-TTTT", "--name", "Sở Thông tin và Truyền thông"]);
    let token = cli(&["token", "create", "--agency", "SO-TTTT"]).lines().last().unwrap().trim().to_string();
    run(Command::new("runuser")
        .current_dir("/")
        .args(["-u", "canhgac-agent", "--", "/usr/bin/canhgac-agent", "enroll", "--collector", &url])
        .args(["--token", &token, "--ca-pin", &pin, "--state-dir"])
        .arg(&adir));
    let key = std::fs::metadata(adir.join("agent.pem")).unwrap();
    assert_eq!((key.uid(), key.mode() & 0o777), (uid_of("canhgac-agent"), 0o600), "agent.pem");

    // 7. The agent as its unit starts it, on the installed configuration
    // with a replay instead of eth0.
    let demo = workspace().join("deploy/demo");
    let mut pcaps = Vec::new();
    for f in ["sofacy-dns.pcap", "agenttesla-c2.pcap", "ioc.txt"] {
        std::fs::copy(demo.join(f), etc.join(f)).unwrap();
        std::fs::set_permissions(etc.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        pcaps.push(etc.join(f));
    }
    let acfg = etc.join("agent.toml");
    let text = std::fs::read_to_string("/etc/canhgac/agent.toml").unwrap();
    let text = set_line(&text, r#"state_dir = "/var/lib/canhgac-agent""#, &format!("state_dir = {adir:?}"));
    let text = set_line(&text, r#"interface = "eth0""#, &format!("pcap = [{:?}, {:?}]", pcaps[0], pcaps[1]));
    let text = set_line(&text, "files = []", &format!("files = [{:?}]", pcaps[2]));
    std::fs::write(&acfg, text).unwrap();
    let aunit = Unit::load("canhgac-agent.service");
    assert_eq!(aunit.one("User"), Some("canhgac-agent"));
    let mut agent = aunit.start("agent", "/etc/canhgac/agent.toml", &acfg, tmp.path().join("agent.log"));
    let alerts = wait_for("the replay's alerts at the collector", Duration::from_secs(60), || {
        agent.assert_running();
        collector.assert_running();
        let out = cli(&["alerts", "list", "--json"]);
        let mut ind: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|a| a["canhgac"]["indicator"].as_str().unwrap_or_default().to_string())
            .collect();
        ind.sort();
        (ind == ["45.9.74.78", "drivres-update.info", "softupdates.info"]).then_some(out)
    });
    assert!(alerts.contains(r#""agency":"SO-TTTT""#), "{alerts}");
    let table = cli(&["alerts", "list"]);
    assert!(table.contains("SO-TTTT") && table.lines().count() >= 4, "{table}");
    let pid = agent.pid();
    assert_eq!(
        proc_status(pid, "Uid").split_whitespace().next(),
        Some(uid_of("canhgac-agent").to_string().as_str())
    );
    // CAP_NET_RAW (13) and CAP_DAC_READ_SEARCH (2), nothing else
    for cap in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, cap), "0000000000002004", "agent {cap}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert!(agent.logs().contains("connected to the collector"), "{}", agent.logs());
    let agents = cli(&["agents", "list", "--json"]);
    assert!(agents.contains("SO-TTTT"), "{agents}");

    // 8. systemd's stop (SIGTERM) is a clean stop for both.
    assert_eq!(agent.stop(Duration::from_secs(20)), 0, "{}", agent.logs());
    assert_eq!(collector.stop(Duration::from_secs(30)), 0, "{}", collector.logs());

    // 9. Purge: programs, units and configuration gone, the agent's
    // identity and spool gone, the collector's data (CA, database, audit
    // log) kept; system users stay (Debian's rule for system users).
    let purge = run(Command::new("dpkg").arg("--purge").args(PACKAGES));
    for pkg in PACKAGES {
        assert!(!installed(pkg), "{pkg} purged");
    }
    for gone in [
        "/usr/bin/canhgac-agent",
        "/usr/bin/canhgac-collector",
        "/usr/bin/canhgac",
        "/usr/lib/systemd/system/canhgac-agent.service",
        "/usr/lib/systemd/system/canhgac-collector.service",
        "/etc/canhgac",
        "/var/lib/canhgac-agent",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after the purge");
    }
    assert!(Path::new("/var/lib/canhgac-collector").is_dir(), "the collector's data is kept");
    assert!(
        String::from_utf8_lossy(&purge.stderr).contains("/var/lib/canhgac-collector"),
        "the purge says so"
    );
    eprintln!("packaged in {packaged:?}, whole test {:?}", started.elapsed());
}
