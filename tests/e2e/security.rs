//! Identity, enrollment and refusal at the handshake.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use canhgac_proto::{
    client::{ClientIdentity, CollectorAddr, ServerTrust, TlsClient},
    identity::Identity,
    v1::{ListAgenciesRequest, operator_client::OperatorClient},
};
use canhgac_tests::{Agent, Burst, Collector, bin, rrnames, wait_for};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};

use crate::setup;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn reused_expired_unknown_and_foreign_agency_tokens_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    c.add_agency("A", "Agency A");
    c.add_agency("B", "Agency B");

    let token = c.token("A", None);
    Agent::new(tmp.path(), "first").enroll(&c, &token);

    let second = Agent::new(tmp.path(), "second");
    let out = second.enroll_output(&c, &token, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already used"), "{}", stderr(&out));
    assert!(!second.state_dir.join("identity.toml").exists(), "nothing created on refusal");

    let short = c.token("A", Some("1s"));
    std::thread::sleep(Duration::from_millis(1500));
    let out = second.enroll_output(&c, &short, &[]);
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));

    let out = second.enroll_output(&c, "cgt_not-a-real-token", &[]);
    assert!(stderr(&out).contains("unknown enrollment token"), "{}", stderr(&out));

    let for_a = c.token("A", None);
    let out = second.enroll_output(&c, &for_a, &["--agency", "B"]);
    assert!(stderr(&out).contains("another agency"), "{}", stderr(&out));
    // the refused token was not consumed
    second.enroll_output(&c, &for_a, &["--agency", "A"]);
    assert!(second.state_dir.join("identity.toml").exists());

    let agents = c.agents();
    assert_eq!(agents.len(), 2, "only the two successful enrollments: {agents:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(second.state_dir.join("agent.pem")).unwrap().permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn enrollment_refuses_a_collector_whose_ca_does_not_match_the_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    c.add_agency("A", "Agency A");
    let token = c.token("A", None);
    let agent = Agent::new(tmp.path(), "agent");
    let out = std::process::Command::new(bin("canhgac-agent"))
        .args(["enroll", "--collector", &c.url(), "--token", &token, "--ca-pin", &"ab".repeat(32)])
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not match the pin"), "{}", stderr(&out));
    assert!(!agent.state_dir.join("identity.toml").exists());
    // the token was never presented, so it still works
    agent.enroll(&c, &token);
}

/// A client certificate chain and key signed by `issuer`.
fn client_cert(issuer: &Issuer<'_, KeyPair>, identity: &Identity, expired: bool) -> ClientIdentity {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if expired {
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
        params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    }
    let cert = params.signed_by(&key, issuer).unwrap();
    ClientIdentity { certificate_pem: cert.pem(), private_key_pem: key.serialize_pem() }
}

fn operator_call(c: &Collector, identity: ClientIdentity) -> Result<(), String> {
    let profile = std::fs::read_to_string(c.profile()).unwrap();
    let ca = profile.split("ca = \"\"\"").nth(1).unwrap().split("\"\"\"").next().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let addr: CollectorAddr = c.url().parse().unwrap();
        let client = TlsClient::new(addr, ServerTrust::Ca(ca), Some(identity)).map_err(|e| e.to_string())?;
        let channel = client.connect(Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
        OperatorClient::new(channel)
            .list_agencies(ListAgenciesRequest {})
            .await
            .map(|_| ())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    })
}

#[test]
fn foreign_ca_expired_plain_tcp_and_garbage_are_refused_and_service_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();

    // A certificate from another CA, claiming to be the admin operator.
    let foreign_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let foreign = Issuer::new(ca_params, foreign_key);
    let err =
        operator_call(&c, client_cert(&foreign, &Identity::Operator("admin".into()), false)).unwrap_err();
    eprintln!("foreign CA: {err}");

    // Our own CA, but expired.
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(c.dir.join("pki/ca.key")).unwrap()).unwrap();
    let ours = Issuer::from_ca_cert_pem(&std::fs::read_to_string(c.dir.join("pki/ca.crt")).unwrap(), ca_key)
        .unwrap();
    let err = operator_call(&c, client_cert(&ours, &Identity::Operator("admin".into()), true)).unwrap_err();
    eprintln!("expired: {err}");

    // Plain TCP and garbage: the server closes the connection.
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
        &[0u8; 64][..],
    ] {
        let mut s = TcpStream::connect(c.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(garbage).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(buf.len() < 200, "the server answered garbage with {} bytes", buf.len());
    }
    // A client that connects and says nothing is dropped after the handshake timeout.
    let idle = TcpStream::connect(c.addr()).unwrap();

    let logs = wait_for("refusals in the log", Duration::from_secs(10), || {
        let l = c.logs();
        (l.matches("refused connection at the TLS handshake").count() >= 5).then_some(l)
    });
    assert!(logs.contains("UnknownIssuer") || logs.contains("unknown issuer"), "{logs}");
    assert!(logs.to_lowercase().contains("expired"), "{logs}");
    // The server keeps serving everyone else.
    assert!(c.cli(&["agency", "list"]).contains("CODE"));
    drop(idle);
}

#[test]
fn agent_and_operator_certificates_are_confined_to_their_services() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, agent) = setup(tmp.path());
    let pem = std::fs::read_to_string(agent.state_dir.join("agent.pem")).unwrap();
    let err =
        operator_call(&c, ClientIdentity { certificate_pem: pem.clone(), private_key_pem: pem }).unwrap_err();
    assert!(err.contains("PermissionDenied"), "{err}");
}

#[test]
fn a_revoked_agent_is_cut_off_and_refused_at_the_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let burst =
        Burst::new(tmp.path(), 2000, "[uplink]\nbackoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\n");
    agent.start(&burst.args(&["--replay-pps", "100"]));
    let id = agent.agent_id();
    wait_for("records to arrive", Duration::from_secs(30), || (!c.alerts().is_empty()).then_some(()));

    let out = c.cli(&["agent", "revoke", &id, "--reason", "test"]);
    assert!(out.contains("1 open stream(s) closed"), "{out}");
    let stored = c.alerts().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.alerts().len(), stored, "a revoked agent can no longer deliver");
    let a = &c.agents()[0];
    assert_eq!(a["revoked"], true);
    assert_eq!(a["connected"], false);
    let logs = c.logs();
    assert!(logs.contains("refused revoked certificate at handshake"), "{logs}");
    assert!(agent.logs().contains("interrupted"), "the agent keeps its data and retries");
    // The revocation survives a collector restart.
    let mut c = c;
    c.kill();
    c.start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.alerts().len(), stored);
    assert!(rrnames(&c.alerts()).len() <= 2000);
}

#[test]
fn config_errors_exit_2_and_name_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(&cfg, "version = 1\n[uplink]\nbatch_records = 5\n").unwrap();
    let out = std::process::Command::new(bin("canhgac-agent"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--state-dir", "/nonexistent", "--pcap", "x.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("agent.toml:3:1")
            && e.contains("field `uplink.batch_records`")
            && e.contains("unknown field"),
        "{e}"
    );

    let mut c = Collector::init(tmp.path());
    c.set_config("[limits]\nhandshake_timeout = \"soon\"\n");
    let port = c.port;
    let out = std::process::Command::new(bin("canhgac-collector"))
        .args(["serve", "--data-dir"])
        .arg(&c.dir)
        .args([
            "--config",
            c.config.as_ref().unwrap().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("collector.toml:3:")
            && e.contains("limits.handshake_timeout")
            && e.contains("invalid duration"),
        "{e}"
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing bound");
}

/// Short-lived certificates are renewed over the stream; after the first
/// certificate has expired the agent reconnects with a renewed one.
#[test]
fn agent_certificate_is_renewed_before_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.set_config("[pki]\nagent_certificate_ttl = \"20s\"\n[telemetry]\nheartbeat_interval = \"1s\"\n");
    c.start();
    c.add_agency("A", "Agency A");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &c.token("A", None));
    let enrolled = std::time::Instant::now();
    let first = std::fs::read_to_string(agent.state_dir.join("agent.pem")).unwrap();
    let burst =
        Burst::new(tmp.path(), 300, "[uplink]\nbackoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\n");
    let names = burst.names.clone();
    agent.start(&burst.args(&["--replay-pps", "10", "--exit-when-drained"]));
    wait_for("a renewed certificate", Duration::from_secs(30), || {
        let now = std::fs::read_to_string(agent.state_dir.join("agent.pem")).unwrap();
        (now != first).then_some(())
    });
    assert!(c.logs().contains("agent certificate renewed"));
    // Let the first certificate expire, then force a reconnection.
    if let Some(rest) = Duration::from_secs(22).checked_sub(enrolled.elapsed()) {
        std::thread::sleep(rest);
    }
    c.kill();
    c.start();
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    assert_eq!(rrnames(&c.alerts()).len(), names.len());
}

/// Wrong-token floods are limited per source address: after
/// `limits.enrollment_failures` refusals within the window even a good
/// token is refused (and not consumed) until the window passes; operators
/// are served meanwhile; the refusals are counted in the metrics.
#[test]
fn enrollment_floods_are_limited_per_source_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mport = canhgac_tests::free_port();
    let mut c = Collector::init(tmp.path());
    c.set_config(&format!(
        "[limits]\nenrollment_failures = 5\nenrollment_failure_window = \"4s\"\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n"
    ));
    c.start();
    c.add_agency("A", "Agency A");
    let good = c.token("A", None);
    let agent = Agent::new(tmp.path(), "flooded");
    for i in 0..5 {
        let out = agent.enroll_output(&c, &format!("cgt_wrong-token-{i}"), &[]);
        assert!(stderr(&out).contains("unknown enrollment token"), "{}", stderr(&out));
    }
    let started = std::time::Instant::now();
    let out = agent.enroll_output(&c, &good, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("too many failed enrollments"), "{}", stderr(&out));
    assert!(!agent.state_dir.join("identity.toml").exists());
    // operators are served during the flood
    let t = std::time::Instant::now();
    c.cli(&["agency", "list"]);
    assert!(t.elapsed() < Duration::from_secs(5), "operator call took {:?}", t.elapsed());
    // the window passes: the same token, not consumed, enrolls
    std::thread::sleep(Duration::from_secs(4).saturating_sub(started.elapsed()) + Duration::from_millis(500));
    agent.enroll(&c, &good);
    assert!(agent.state_dir.join("identity.toml").exists());
    let mut s = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    for (series, want) in [
        ("canhgac_collector_enrollments_total{outcome=\"refused\"}", "5"),
        ("canhgac_collector_enrollments_total{outcome=\"rate_limited\"}", "1"),
        ("canhgac_collector_enrollments_total{outcome=\"enrolled\"}", "1"),
    ] {
        assert!(text.lines().any(|l| l == format!("{series} {want}")), "{series} {want} not in:\n{text}");
    }
}

/// Hundreds of idle TCP connections and stalled TLS handshakes on the
/// collector's port: an agent still streams, an operator is still served
/// within a bound, and the stalled connections are dropped after
/// `limits.handshake_timeout`.
#[test]
fn idle_and_half_open_connections_do_not_starve_agents_or_operators() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = {
        let mut c = Collector::init(tmp.path());
        c.set_config("[limits]\nhandshake_timeout = \"2s\"\n");
        c.start();
        c.add_agency("SO-TTTT", "Sở Thông tin và Truyền thông");
        let token = c.token("SO-TTTT", None);
        let agent = Agent::new(tmp.path(), "agent");
        agent.enroll(&c, &token);
        (c, agent)
    };
    // 300 silent TCP connections and 100 that start a TLS handshake and stall
    let mut hostile = Vec::new();
    for i in 0..400 {
        let mut s = TcpStream::connect(c.addr()).unwrap();
        if i % 4 == 0 {
            // the first bytes of a ClientHello record, then nothing
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]).unwrap();
        }
        hostile.push(s);
    }
    let t = std::time::Instant::now();
    assert!(c.cli(&["agency", "list"]).contains("SO-TTTT"));
    let operator = t.elapsed();
    assert!(
        operator < Duration::from_secs(5),
        "an operator call took {operator:?} under 400 hostile connections"
    );
    let burst = Burst::new(tmp.path(), 2000, "");
    agent.start(&burst.args(&["--exit-when-drained"]));
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    assert_eq!(rrnames(&c.alerts()).len(), 2000, "every record delivered");
    // the stalled connections are closed by the server after the timeout
    std::thread::sleep(Duration::from_secs(3));
    let mut closed = 0;
    for s in &mut hostile {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 256];
        // an alert may come first; then the end of the stream
        let shut = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        };
        closed += usize::from(shut);
    }
    assert_eq!(closed, hostile.len(), "every idle or stalled connection was closed by the collector");
    c.kill();
}
