//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary
//! directory, `pg_ctl start` listening on a Unix socket in it only (and on
//! a loopback port when asked), stopped and removed when dropped, also when
//! a test panics. As root, the cluster runs as the `postgres` user (or
//! `nobody`): PostgreSQL refuses to run as root.
//!
//! Binaries: `$CANHGAC_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`,
//! else `initdb` on `PATH`. Missing binaries are an error that says so:
//! tests never skip silently.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

/// A running cluster; stopped and deleted on drop.
pub struct TestCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Run the server's commands as this user (when we are root).
    user: Option<String>,
    port: u16,
    tcp: bool,
    /// `postgres` options given to `pg_ctl -o`.
    server_opts: String,
}

/// The superuser the cluster is created with (trust authentication).
pub const USER: &str = "canhgac";

fn find_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CANHGAC_PG_BIN") {
        return Ok(PathBuf::from(p));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return Ok(dir);
            }
        }
    }
    Err("PostgreSQL server binaries not found (initdb, pg_ctl): install the `postgresql` package \
         (Debian: apt-get install postgresql) or set CANHGAC_PG_BIN to their directory"
        .into())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let what = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A loopback port free now.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl TestCluster {
    /// Starts a cluster on a Unix socket only.
    pub fn start() -> Result<TestCluster, String> {
        Self::start_with(false)
    }

    /// Starts a cluster; with `tcp`, it also listens on 127.0.0.1.
    pub fn start_with(tcp: bool) -> Result<TestCluster, String> {
        Self::start_opts(tcp, None)
    }

    /// Starts a cluster listening on 127.0.0.1 too, with TLS on: the
    /// server presents `cert_pem` (chain) and `key_pem`.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<TestCluster, String> {
        Self::start_opts(true, Some((cert_pem, key_pem)))
    }

    fn start_opts(tcp: bool, tls: Option<(&str, &str)>) -> Result<TestCluster, String> {
        let bin = find_bin()?;
        let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let user = if root {
            let u = ["postgres", "nobody"]
                .into_iter()
                .find(|u| Command::new("id").arg("-u").arg(u).output().is_ok_and(|o| o.status.success()))
                .ok_or("running as root and neither user `postgres` nor `nobody` exists")?;
            Some(u.to_string())
        } else {
            None
        };
        let base = std::env::temp_dir();
        let dir = base.join(format!(
            "canhgac-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                % 1_000_000_000
        ));
        std::fs::create_dir_all(dir.join("sock")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut c = TestCluster { dir, bin, user, port: free_port()?, tcp, server_opts: String::new() };
        let mut ssl = String::new();
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt as _;
            let (cert_path, key_path) = (c.dir.join("server.crt"), c.dir.join("server.key"));
            std::fs::write(&cert_path, cert).map_err(|e| e.to_string())?;
            std::fs::write(&key_path, key).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            ssl = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert_path.display(),
                key_path.display()
            );
        }
        if let Some(u) = &c.user {
            run(Command::new("chown").arg("-R").arg(format!("{u}:")).arg(&c.dir))?;
        }
        run(c.as_user("initdb").arg("-D").arg(c.data()).args([
            "-U",
            USER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]))?;
        let listen = if tcp { "127.0.0.1" } else { "" };
        let opts = format!(
            "-k {} -p {} -c listen_addresses='{listen}' -c fsync=off -c max_connections=200{ssl}",
            c.socket_dir().display(),
            c.port
        );
        c.server_opts = opts.clone();
        run(c
            .as_user("pg_ctl")
            .arg("-D")
            .arg(c.data())
            .arg("-l")
            .arg(c.dir.join("log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]))
        .map_err(|e| {
            format!("{e}\nserver log:\n{}", std::fs::read_to_string(c.dir.join("log")).unwrap_or_default())
        })?;
        Ok(c)
    }

    /// Stops the server (fast shutdown: sessions are cut), keeping the data.
    pub fn stop(&self) -> Result<(), String> {
        run(self.as_user("pg_ctl").arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]))
    }

    /// Starts the server again after [`TestCluster::stop`], same port.
    pub fn restart(&self) -> Result<(), String> {
        run(self.as_user("pg_ctl").arg("-D").arg(self.data()).arg("-l").arg(self.dir.join("log")).args([
            "-w",
            "-t",
            "60",
            "-o",
            &self.server_opts,
            "start",
        ]))
    }

    fn as_user(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(u) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", u, "--"]).arg(path).current_dir(&self.dir);
                cmd
            }
            None => Command::new(path),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database; an existing one is kept.
    pub fn create_db(&self, name: &str) -> Result<(), String> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.arg("-h")
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
            ])
            .arg("-c")
            .arg(format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"));
        let out = cmd.output().map_err(|e| format!("psql: {e}"))?;
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            return Ok(());
        }
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""))
    }

    /// Runs SQL in a database with `psql`.
    pub fn sql(&self, db: &str, sql: &str) -> Result<(), String> {
        run(Command::new(self.bin.join("psql")).arg("-h").arg(self.socket_dir()).args([
            "-p",
            &self.port.to_string(),
            "-U",
            USER,
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ]))
    }

    /// URL of a database over the Unix socket.
    pub fn url(&self, db: &str) -> String {
        let sock = self.socket_dir().display().to_string().replace('/', "%2F");
        format!("postgres://{USER}@{sock}:{}/{db}", self.port)
    }

    /// URL of a database over TCP (a cluster started with `tcp`).
    pub fn tcp_url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    pub fn listens_on_tcp(&self) -> bool {
        self.tcp
    }

    /// The cluster's directory (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self
            .as_user("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
