//! The collector's telemetry protocol, in process: a real server on
//! 127.0.0.1:0 with real TLS and sled, and a hand-driven agent stream.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use canhgac_collector::{admin, config::ServeConfig, profile::Profile, server};
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
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let data = dir.path().join("c");
    let init = admin::init(&data, &["127.0.0.1".into()], Some(&url)).unwrap();
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(&cfg_path, format!("version = 1\n[limits]\nmax_batch_bytes = \"{max_batch_bytes}\"\n"))
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
    op.add_agency(AddAgencyRequest { code: "A".into(), name: "A".into() }).await.unwrap();
    let token = op
        .create_enrollment_token(CreateEnrollmentTokenRequest { agency: "A".into(), ttl_seconds: 0 })
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
    Record { seq, kind: RecordKind::Alert as i32, severity: 2, eve_json: eve.as_bytes().to_vec(), time: None }
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
    assert_eq!(alerts[0].severity, 1);
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
