//! The collector's telemetry protocol, in process: a real server on
//! 127.0.0.1:0 with real TLS and sled, and a hand-driven agent stream.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use canhgac_collector::{admin, config::ServeConfig, server};
use canhgac_proto::profile::Profile;
use canhgac_proto::{
    client::{ClientIdentity, ServerTrust, TlsClient},
    v1::{
        AddAgencyRequest, AgentMessage, Batch, CreateEnrollmentTokenRequest, EnrollRequest, Hello,
        ListAgentsRequest, ListAlertsRequest, Record, RecordKind, agent_message::Body as Out,
        collector_message::Body as In, enrollment_client::EnrollmentClient, operator_client::OperatorClient,
        telemetry_client::TelemetryClient,
    },
};
use tokio_stream::wrappers::ReceiverStream;

struct Fixture {
    _dir: tempfile::TempDir,
    profile: Profile,
    url: String,
    pin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn start(max_batch_bytes: &str) -> Fixture {
    start_with(max_batch_bytes, "").await
}

async fn start_with(max_batch_bytes: &str, extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let data = dir.path().join("c");
    let init = admin::init(&data, &["127.0.0.1".into()], Some(&url)).unwrap();
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        format!("version = 1\n{extra}\n[limits]\nmax_batch_bytes = \"{max_batch_bytes}\"\n"),
    )
    .unwrap();
    let cfg = ServeConfig::load(&cfg_path, Some(data)).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(cfg, listener, async {
        let _ = rx.await;
    }));
    let profile = Profile::load(&init.profile).unwrap();
    Fixture { _dir: dir, profile, url, pin: init.pin, stop: Some(tx) }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Enrolls a hand-made agent; returns its TLS client.
async fn enroll(f: &Fixture) -> TlsClient {
    let channel = f.profile.client(None).unwrap().connect(Duration::from_secs(5)).await.unwrap();
    let mut op = OperatorClient::new(channel);
    op.add_agency(AddAgencyRequest { code: "A".into(), name: "A".into(), ..Default::default() })
        .await
        .unwrap();
    let token = op
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            agency: "A".into(),
            ttl_seconds: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default().serialize_request(&key).unwrap().pem().unwrap();
    let anon = TlsClient::new(f.url.parse().unwrap(), ServerTrust::Pin(f.pin.clone()), None).unwrap();
    let resp = EnrollmentClient::new(anon.connect(Duration::from_secs(5)).await.unwrap())
        .enroll(EnrollRequest { token, csr_pem: csr, hostname: "h".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    TlsClient::new(
        f.url.parse().unwrap(),
        ServerTrust::Ca(resp.ca_chain_pem),
        Some(ClientIdentity { certificate_pem: resp.certificate_pem, private_key_pem: key.serialize_pem() }),
    )
    .unwrap()
}

fn record(seq: u64, eve: &str) -> Record {
    Record {
        seq,
        kind: RecordKind::Alert as i32,
        severity: 2,
        eve_json: eve.as_bytes().to_vec(),
        time: None,
        facts: None,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_acked_once_stored_rejected_when_too_large_and_deduplicated() {
    let f = start("64KiB").await;
    let agent = enroll(&f).await;
    let mut tele = TelemetryClient::new(agent.connect(Duration::from_secs(5)).await.unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let send = |body| AgentMessage { body: Some(body) };
    tx.send(send(Out::Hello(Hello { protocol_version: 1, ..Default::default() }))).await.unwrap();
    let mut inbound = tele.stream(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let Some(In::Welcome(w)) = inbound.message().await.unwrap().unwrap().body else { panic!("no welcome") };
    assert_eq!(w.max_batch_bytes, 64 * 1024);

    // too large: rejected with the limits, nothing stored
    let big = "x".repeat(1000);
    let records: Vec<Record> =
        (1..=100).map(|s| record(s, &format!(r#"{{"event_type":"alert","pad":"{big}"}}"#))).collect();
    tx.send(send(Out::Batch(Batch { records }))).await.unwrap();
    let Some(In::Rejected(r)) = inbound.message().await.unwrap().unwrap().body else {
        panic!("not rejected")
    };
    assert_eq!((r.first_seq, r.last_seq, r.max_batch_bytes), (1, 100, 64 * 1024));

    // fine, and the identity fields are the collector's
    let forged =
        r#"{"event_type":"alert","alert":{"severity":1},"canhgac":{"agency":"FORGED","agent_id":"x"}}"#;
    tx.send(send(Out::Batch(Batch { records: vec![record(1, forged), record(2, "not json")] })))
        .await
        .unwrap();
    let Some(In::Ack(a)) = inbound.message().await.unwrap().unwrap().body else { panic!("not acked") };
    assert_eq!((a.first_seq, a.last_seq, a.stored, a.duplicates), (1, 2, 1, 0));
    // resent: acked again, stored once
    tx.send(send(Out::Batch(Batch { records: vec![record(1, forged), record(2, "not json")] })))
        .await
        .unwrap();
    let Some(In::Ack(a)) = inbound.message().await.unwrap().unwrap().body else { panic!("not acked") };
    assert_eq!((a.stored, a.duplicates), (0, 2));
    // out of order: refused
    tx.send(send(Out::Batch(Batch { records: vec![record(5, forged), record(4, forged)] }))).await.unwrap();
    let Some(In::Rejected(r)) = inbound.message().await.unwrap().unwrap().body else {
        panic!("not rejected")
    };
    assert!(r.reason.contains("increasing"));

    let channel = f.profile.client(None).unwrap().connect(Duration::from_secs(5)).await.unwrap();
    let mut op = OperatorClient::new(channel);
    let alerts = op.list_alerts(ListAlertsRequest::default()).await.unwrap().into_inner().alerts;
    assert_eq!(alerts.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&alerts[0].eve_json).unwrap();
    assert_eq!(v["canhgac"]["agency"], "A");
    assert_ne!(v["canhgac"]["agent_id"], "x");
    assert_eq!(alerts[0].severity, 2, "the typed severity, not the EVE value");
    let agents = op.list_agents(ListAgentsRequest::default()).await.unwrap().into_inner().agents;
    assert_eq!(agents[0].records_invalid, 1, "the bad record is quarantined and counted");
    assert_eq!(agents[0].batches_rejected, 2);
    assert!(agents[0].connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_message_must_be_hello() {
    let f = start("4MiB").await;
    let agent = enroll(&f).await;
    let mut tele = TelemetryClient::new(agent.connect(Duration::from_secs(5)).await.unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(AgentMessage { body: Some(Out::Batch(Batch::default())) }).await.unwrap();
    let mut inbound = tele.stream(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let err = inbound.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

/// A syslog-over-TLS receiver: octet-counted RFC 5424 frames, as strings.
async fn syslog_receiver(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    out: tokio::sync::mpsc::UnboundedSender<String>,
) {
    use tokio::io::AsyncReadExt as _;
    let Ok((tcp, _)) = listener.accept().await else { return };
    let mut s = acceptor.accept(tcp).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
            if buf.len() < sp + 1 + len {
                break;
            }
            let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
            buf.drain(..sp + 1 + len);
            let _ = out.send(msg);
        }
    }
}

/// A receiver's own CA (PEM) and a TLS acceptor for 127.0.0.1.
fn receiver_tls() -> (String, tokio_rustls::TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (ca_cert.pem(), tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config)))
}

/// Reads forwarded messages until `want` distinct alerts arrived (20 s at most).
async fn collect_alerts(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    alerts: &mut std::collections::BTreeSet<u64>,
    want: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while alerts.len() < want {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await else { return };
        assert!(m.starts_with("<162>1 ") || m.starts_with("<163>1 "), "{m}");
        let json = &m[m.find('{').unwrap()..];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        if v["type"] == "alert" {
            assert_eq!(v["agency"], "A");
            assert!(alerts.insert(v["cursor"].as_u64().unwrap()), "alert forwarded twice: {m}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarder_delivers_alerts_as_syslog_over_tls_and_queues_while_the_receiver_is_down() {
    let (ca_pem, acceptor) = receiver_tls();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    // The collector, forwarding everything there.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("siem-ca.crt");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let extra = format!(
        "[forward]\nurl = \"syslog+tls://127.0.0.1:{port}\"\nca_file = \"{}\"\nretry_max = \"1s\"\n",
        ca_file.display()
    );
    let f = start_with("4MiB", &extra).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(syslog_receiver(listener, acceptor.clone(), tx.clone()));

    let agent = enroll(&f).await;
    let mut tele = TelemetryClient::new(agent.connect(Duration::from_secs(5)).await.unwrap());
    let (atx, arx) = tokio::sync::mpsc::channel(8);
    let send = |body| AgentMessage { body: Some(body) };
    atx.send(send(Out::Hello(Hello { protocol_version: 1, ..Default::default() }))).await.unwrap();
    let mut inbound = tele.stream(ReceiverStream::new(arx)).await.unwrap().into_inner();
    inbound.message().await.unwrap().unwrap();
    let alert = |seq: u64| {
        record(
            seq,
            &format!(r#"{{"event_type":"alert","src_ip":"203.0.113.{seq}","alert":{{"severity":1}}}}"#),
        )
    };
    atx.send(send(Out::Batch(Batch { records: (1..=5).map(alert).collect() }))).await.unwrap();
    inbound.message().await.unwrap().unwrap();

    let mut alerts = std::collections::BTreeSet::new();
    collect_alerts(&mut rx, &mut alerts, 5).await;
    assert_eq!(alerts.len(), 5);

    // The receiver goes away; alerts queue up durably; it comes back.
    receiver.abort();
    let _ = receiver.await;
    atx.send(send(Out::Batch(Batch { records: (6..=10).map(alert).collect() }))).await.unwrap();
    inbound.message().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(syslog_receiver(listener, acceptor, tx));
    let mut more = alerts.clone();
    collect_alerts(&mut rx, &mut more, 10).await;
    assert_eq!(more.len(), 10, "every alert forwarded once: {more:?}");
}

/// Integrators can explore the API with grpcurl: reflection lists the
/// services to an operator certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reflection_lists_the_services() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let f = start("4MiB").await;
    let channel = f.profile.client(None).unwrap().connect(Duration::from_secs(5)).await.unwrap();
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in ["canhgac.v1.Operator", "canhgac.v1.Telemetry", "canhgac.v1.Enrollment"] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
}

/// An HTTPS receiver that refuses the first request (503) and accepts the
/// next ones: the forwarder retries, every alert arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarder_posts_json_over_https_and_retries_refused_batches() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (ca_pem, acceptor) = receiver_tls();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        let mut requests = 0;
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let Ok(mut s) = acceptor.accept(tcp).await else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "request cut short");
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                assert!(head.starts_with("post /ingest http/1.1"), "{head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap();
                if buf.len() >= end + 4 + len {
                    break buf[end + 4..end + 4 + len].to_vec();
                }
            };
            requests += 1;
            if requests == 1 {
                s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await.unwrap();
                continue;
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            let _ = s.shutdown().await;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for item in v.as_array().unwrap() {
                let _ = tx.send(item.clone());
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ncsc-ca.crt");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let extra = format!(
        "[forward]\nurl = \"https://127.0.0.1:{port}/ingest\"\nca_file = \"{}\"\nretry_max = \"1s\"\nincidents = false\n",
        ca_file.display()
    );
    let f = start_with("4MiB", &extra).await;
    let agent = enroll(&f).await;
    let mut tele = TelemetryClient::new(agent.connect(Duration::from_secs(5)).await.unwrap());
    let (atx, arx) = tokio::sync::mpsc::channel(8);
    let send = |body| AgentMessage { body: Some(body) };
    atx.send(send(Out::Hello(Hello { protocol_version: 1, ..Default::default() }))).await.unwrap();
    let mut inbound = tele.stream(ReceiverStream::new(arx)).await.unwrap().into_inner();
    inbound.message().await.unwrap().unwrap();
    let records =
        (1..=8).map(|seq| record(seq, r#"{"event_type":"alert","alert":{"severity":2}}"#)).collect();
    atx.send(send(Out::Batch(Batch { records }))).await.unwrap();
    inbound.message().await.unwrap().unwrap();
    let mut cursors = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cursors.len() < 8 {
        let Ok(Some(v)) = tokio::time::timeout_at(deadline, rx.recv()).await else { break };
        assert_eq!(v["type"], "alert", "incidents are not forwarded here: {v}");
        assert_eq!(v["eve"]["canhgac"]["agency"], "A");
        assert!(cursors.insert(v["cursor"].as_u64().unwrap()), "forwarded twice: {v}");
    }
    assert_eq!(cursors.len(), 8);
}
