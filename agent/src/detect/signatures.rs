//! Feeding the signature engine ([`crate::rules`]): the sticky buffers of
//! each application event, in Suricata's formats, and the EVE alerts of the
//! rules that fire.

use serde_json::{Map, Value, json};

use canhgac_proto::v1::RecordFacts;

use crate::{
    app::{AppEvent, AppState, Proto, http::HttpEvent, http::HttpTx, tls::TlsEvent},
    decode::Packet,
    eve,
    flow::{Dir, Flow},
    rules::{AlertTarget, AppProto, Buffer, RuleMatch},
};

/// The buffers of one transaction (owned: the rule engine borrows them) and
/// its event, whose EVE object ([`eve_object`]) is built only for an alert.
pub(super) struct Tx<'e> {
    pub buffers: Vec<(Buffer, Vec<u8>)>,
    pub event: &'e AppEvent,
}

/// The rule engine's protocol of a flow: ours where we parse it, else by
/// the service port for the protocols ET rules name.
pub(super) fn app_proto(flow: &Flow) -> AppProto {
    match flow.app.proto() {
        Proto::Dns => AppProto::Dns,
        Proto::Tls => AppProto::Tls,
        Proto::Http => AppProto::Http,
        Proto::Ssh => AppProto::Ssh,
        Proto::Unknown => match (flow.proto, flow.server.1) {
            (6, 21) => AppProto::Ftp,
            (6, 25 | 587 | 465) => AppProto::Smtp,
            (6, 139 | 445) => AppProto::Smb,
            (17, 67 | 68) => AppProto::Dhcp,
            (17, 123) => AppProto::Ntp,
            (17, 69) => AppProto::Tftp,
            (17, 161 | 162) => AppProto::Snmp,
            (6, 3389) => AppProto::Rdp,
            _ => AppProto::Unknown,
        },
    }
}

fn header_value_buffers(
    out: &mut Vec<(Buffer, Vec<u8>)>,
    headers: &[(String, Vec<u8>)],
    names: &[(&str, Buffer)],
) {
    for (name, buffer) in names {
        if let Some((_, v)) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push((*buffer, v.clone()));
        }
    }
}

fn request_buffers(tx: &HttpTx, out: &mut Vec<(Buffer, Vec<u8>)>, with_neutral: bool) {
    out.push((Buffer::HttpUri, tx.normalized_uri()));
    out.push((Buffer::HttpRawUri, tx.uri.as_bytes().to_vec()));
    out.push((Buffer::HttpMethod, tx.method.as_bytes().to_vec()));
    out.push((Buffer::HttpProtocol, tx.protocol.as_bytes().to_vec()));
    out.push((Buffer::HttpRequestLine, tx.request_line.clone()));
    if let Some(h) = tx.host() {
        out.push((Buffer::HttpHost, h.into_bytes()));
    }
    header_value_buffers(
        out,
        &tx.request_headers,
        &[
            ("host", Buffer::HttpRawHost),
            ("user-agent", Buffer::HttpUserAgent),
            ("referer", Buffer::HttpReferer),
            ("accept", Buffer::HttpAccept),
            ("accept-language", Buffer::HttpAcceptLang),
            ("accept-encoding", Buffer::HttpAcceptEnc),
            ("connection", Buffer::HttpConnection),
        ],
    );
    if with_neutral {
        out.push((Buffer::HttpHeader, HttpTx::header_block(&tx.request_headers, "cookie")));
        out.push((Buffer::HttpRawHeader, raw_headers(&tx.request_header_raw)));
        out.push((Buffer::HttpHeaderNames, HttpTx::header_names(&tx.request_headers)));
        out.push((Buffer::HttpStart, tx.request_header_raw.clone()));
        header_value_buffers(
            out,
            &tx.request_headers,
            &[
                ("cookie", Buffer::HttpCookie),
                ("content-type", Buffer::HttpContentType),
                ("content-length", Buffer::HttpContentLen),
            ],
        );
        out.push((Buffer::HttpRequestBody, tx.request_body.clone()));
    }
}

/// The header block without the start line (Suricata's `http.header.raw`).
fn raw_headers(block: &[u8]) -> Vec<u8> {
    match block.windows(2).position(|w| w == b"\r\n") {
        Some(i) => block[i + 2..].to_vec(),
        None => Vec::new(),
    }
}

/// The buffers of an application event, or `None` when it has none.
pub(super) fn transaction<'e>(ev: &'e AppEvent, app: &AppState, dir: Dir) -> Option<Tx<'e>> {
    let mut b = Vec::new();
    match (ev, app) {
        (AppEvent::Dns(msg), _) if !msg.response => {
            for q in &msg.questions {
                b.push((Buffer::DnsQuery, q.name.as_bytes().to_vec()));
            }
            msg.questions.first()?;
        }
        (AppEvent::Tls(TlsEvent::ClientHello), AppState::Tls(t)) => {
            let h = t.client_hello.as_ref()?;
            if let Some(sni) = &h.sni {
                b.push((Buffer::TlsSni, sni.as_bytes().to_vec()));
            }
            b.push((Buffer::Ja3Hash, h.ja3_hash.as_bytes().to_vec()));
            b.push((Buffer::Ja3String, h.ja3_string.as_bytes().to_vec()));
        }
        (AppEvent::Tls(TlsEvent::ServerHello), AppState::Tls(t)) => {
            let h = t.server_hello.as_ref()?;
            b.push((Buffer::Ja3sHash, h.ja3s_hash.as_bytes().to_vec()));
            b.push((Buffer::Ja3sString, h.ja3s_string.as_bytes().to_vec()));
        }
        (AppEvent::Tls(TlsEvent::Certificate), AppState::Tls(t)) => {
            let c = t.cert.as_ref()?;
            b.push((Buffer::TlsCertSubject, c.subject.as_bytes().to_vec()));
            b.push((Buffer::TlsCertIssuer, c.issuer.as_bytes().to_vec()));
            b.push((Buffer::TlsCertSerial, c.serial.as_bytes().to_vec()));
            b.push((Buffer::TlsCertFingerprint, c.fingerprint.as_bytes().to_vec()));
            for san in &c.sans {
                b.push((Buffer::TlsCertSan, san.as_bytes().to_vec()));
            }
            if let Some(h) = &t.client_hello
                && let Some(sni) = &h.sni
            {
                b.push((Buffer::TlsSni, sni.as_bytes().to_vec()));
            }
        }
        (AppEvent::Http(HttpEvent::Request(id)), AppState::Http(h)) => {
            let tx = h.tx(*id)?;
            request_buffers(tx, &mut b, true);
        }
        (AppEvent::Http(HttpEvent::Response(id)), AppState::Http(h)) => {
            let tx = h.tx(*id)?;
            // the request again, so that rules mixing both sides match
            request_buffers(tx, &mut b, false);
            if let Some(code) = tx.status {
                b.push((Buffer::HttpStatCode, code.to_string().into_bytes()));
            }
            b.push((Buffer::HttpStatMsg, tx.status_msg.as_bytes().to_vec()));
            b.push((Buffer::HttpResponseLine, tx.response_line.clone()));
            b.push((Buffer::HttpHeader, HttpTx::header_block(&tx.response_headers, "set-cookie")));
            b.push((Buffer::HttpRawHeader, raw_headers(&tx.response_header_raw)));
            b.push((Buffer::HttpHeaderNames, HttpTx::header_names(&tx.response_headers)));
            b.push((Buffer::HttpStart, tx.response_header_raw.clone()));
            header_value_buffers(
                &mut b,
                &tx.response_headers,
                &[
                    ("set-cookie", Buffer::HttpCookie),
                    ("content-type", Buffer::HttpContentType),
                    ("content-length", Buffer::HttpContentLen),
                    ("server", Buffer::HttpServer),
                    ("location", Buffer::HttpLocation),
                ],
            );
            b.push((Buffer::HttpResponseBody, tx.response_body_decoded().into_owned()));
        }
        (AppEvent::Ssh, AppState::Ssh(s)) => {
            let banner = s.banners[dir as usize].as_ref()?;
            b.push((Buffer::SshProto, banner.proto_version.as_bytes().to_vec()));
            b.push((Buffer::SshSoftware, banner.software.as_bytes().to_vec()));
        }
        (AppEvent::SshKex, AppState::Ssh(s)) => {
            let h = s.hassh[dir as usize].as_ref()?;
            let (hash, string) = if dir == Dir::ToServer {
                (Buffer::SshHassh, Buffer::SshHasshString)
            } else {
                (Buffer::SshHasshServer, Buffer::SshHasshServerString)
            };
            b.push((hash, h.hash.as_bytes().to_vec()));
            b.push((string, h.string.as_bytes().to_vec()));
        }
        _ => return None,
    };
    Some(Tx { buffers: b, event: ev })
}

/// The transactions a flow ends with unfinished: an HTTP request or
/// response whose headers were read but whose body was cut short (the
/// capture or the connection ended first). Suricata inspects them with
/// what was received when the flow ends (its flow-end pseudo packets); the
/// rules see them here once, from [`super::Detect`]'s end of flow.
pub(super) fn unfinished(app: &AppState) -> Vec<(Dir, AppEvent)> {
    let AppState::Http(h) = app else { return Vec::new() };
    let mut out = Vec::new();
    for tx in h.open_transactions() {
        if !tx.request_done {
            out.push((Dir::ToServer, AppEvent::Http(HttpEvent::Request(tx.id))));
        }
        if tx.status.is_some() && !tx.response_done {
            out.push((Dir::ToClient, AppEvent::Http(HttpEvent::Response(tx.id))));
        }
    }
    out
}

/// The EVE object an alert on a transaction of `ev` carries (`dns`,
/// `tls`, `http` or `ssh`), from the flow's current state.
pub(super) fn eve_object(ev: &AppEvent, app: &AppState) -> Option<(&'static str, Value)> {
    Some(match (ev, app) {
        (AppEvent::Dns(msg), _) if !msg.response => {
            let q = msg.questions.first()?;
            ("dns", json!({"query": [eve::dns_query(msg, q)]}))
        }
        (AppEvent::Tls(_), AppState::Tls(t)) => ("tls", eve::tls(t)),
        (AppEvent::Http(HttpEvent::Request(id) | HttpEvent::Response(id)), AppState::Http(h)) => {
            ("http", eve::http(h.tx(*id)?))
        }
        (AppEvent::Ssh | AppEvent::SshKex, AppState::Ssh(s)) => ("ssh", eve::ssh(s)),
        _ => return None,
    })
}

/// ATT&CK technique of a rule: its `mitre_technique_id` metadata, else a
/// default for its classtype.
fn technique(m: &RuleMatch) -> Option<String> {
    if let Some((_, v)) = m.metadata.iter().find(|(k, _)| k == "mitre_technique_id") {
        return Some(v.clone());
    }
    let t = match m.classtype.as_deref()? {
        "trojan-activity" | "command-and-control" | "domain-c2" => "T1071",
        "web-application-attack"
        | "attempted-admin"
        | "attempted-user"
        | "successful-admin"
        | "successful-user" => "T1190",
        "attempted-recon" | "network-scan" | "successful-recon-limited" | "successful-recon-largescale" => {
            "T1595"
        }
        "attempted-dos" | "successful-dos" | "denial-of-service" => "T1498",
        "exploit-kit" => "T1189",
        "coin-mining" => "T1496",
        "shellcode-detect" => "T1203",
        "credential-theft" => "T1556",
        "social-engineering" => "T1566",
        "external-ip-check" => "T1016",
        _ => return None,
    };
    Some(t.to_string())
}

/// The typed facts of a rule match: the rule's word on roles when it has
/// `target:`, else the flow's endpoints; the domain the transaction (or the
/// TLS flow) names.
pub(super) fn facts(
    m: &RuleMatch,
    p: &Packet<'_>,
    dir: Dir,
    flow: &Flow,
    tx: Option<&Tx<'_>>,
) -> RecordFacts {
    let mut f = crate::facts::packet("rule", p, Some(dir), flow.id);
    crate::facts::set_signature(
        &mut f,
        u64::from(m.sid),
        &m.msg,
        &m.category,
        technique(m).as_deref().unwrap_or_default(),
    );
    let src = f.src.clone().unwrap_or_default();
    let dest = f.dest.clone().unwrap_or_default();
    match m.target {
        Some(AlertTarget::SrcIp) => crate::facts::set_roles(&mut f, vec![dest], vec![src]),
        Some(AlertTarget::DestIp) => crate::facts::set_roles(&mut f, vec![src], vec![dest]),
        None => {}
    }
    let named = tx
        .into_iter()
        .flat_map(|t| t.buffers.iter())
        .find(|(b, v)| matches!(b, Buffer::DnsQuery | Buffer::TlsSni | Buffer::HttpHost) && !v.is_empty())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .or_else(|| match &flow.app {
            AppState::Tls(t) => t.client_hello.as_ref().and_then(|h| h.sni.clone()),
            _ => None,
        });
    if let Some(d) = named {
        let d = crate::facts::named(&d).host;
        if d.parse::<std::net::IpAddr>().is_err() {
            f.domain = d;
        }
    }
    f
}

/// The EVE alert of a rule match.
pub(super) fn alert(
    base: Map<String, Value>,
    m: RuleMatch,
    dir: Dir,
    app: Option<&(&'static str, Value)>,
) -> Value {
    let metadata = (!m.metadata.is_empty()).then(|| {
        let mut md: Map<String, Value> = Map::new();
        for (k, v) in &m.metadata {
            if let Value::Array(list) = md.entry(k.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                list.push(v.clone().into());
            }
        }
        Value::Object(md)
    });
    let mut canhgac = json!({"detector": "rule", "technique": technique(&m)});
    if let Some(obj) = canhgac.as_object_mut() {
        if let Some(c) = &m.classtype {
            obj.insert("classtype".into(), c.clone().into());
        }
        if !m.references.is_empty() {
            obj.insert("references".into(), m.references.clone().into());
        }
    }
    // Suricata's format: the endpoint objects of the packet's two ends
    let end = |ip: &str, port: &str| {
        let mut o = Map::new();
        o.insert("ip".into(), base.get(ip).cloned().unwrap_or(Value::Null));
        if let Some(p) = base.get(port) {
            o.insert("port".into(), p.clone());
        }
        Value::Object(o)
    };
    let source_target = m.target.map(|t| {
        let (src, dst) = (end("src_ip", "src_port"), end("dest_ip", "dest_port"));
        match t {
            AlertTarget::DestIp => (src, dst),
            AlertTarget::SrcIp => (dst, src),
        }
    });
    let info = eve::AlertInfo {
        signature_id: u64::from(m.sid),
        gid: m.gid,
        rev: m.rev,
        signature: m.msg,
        category: m.category,
        severity: u32::from(m.severity),
        action: "allowed",
        metadata,
        source_target,
    };
    let extra = app.map(|(k, v)| vec![(*k, v.clone())]).unwrap_or_default();
    eve::alert(base, info, Some(dir), extra, canhgac)
}
