//! Signature rules: the Suricata rule language.
//!
//! A pure, self-contained engine. [`RuleSet::load`] reads rule files (the
//! only I/O, together with `classification.config` and dataset files),
//! compiles every rule it can and returns one [`Skipped`] per rule it cannot
//! express, with file, line, sid and reason. [`RuleSet::inspect`] matches one
//! [`Inspect`] (a packet and/or an app-layer transaction): no I/O, no clock
//! (time is `Inspect::ts_us`), no async, bounded work per call, and no panic
//! on any input. State lives outside the rule set: [`FlowRuleState`] per flow
//! (flowbits, first-packet marks for IP-only rules) and [`GlobalRuleState`]
//! per engine (thresholds, `detection_filter`, runtime dataset changes,
//! scratch space), with bounded memory and counted evictions.
//!
//! # What is supported
//!
//! * Header: actions `alert`, `drop`, `reject` (both reported as alerts with
//!   the action recorded: this is an IDS) and `pass` (a matching pass rule
//!   stops the evaluation of the following rules for that inspection and is
//!   not reported). Protocols `ip`, `pkthdr`, `tcp`, `tcp-pkt`, `tcp-stream`,
//!   `udp`, `icmp` (v4 and v6), `icmpv4`, `icmpv6` and the app-layer
//!   protocols of [`AppProto`] (`http`/`http1` also match HTTP/2 like
//!   Suricata 7, `ssl` is `tls`, `ike` is `ikev2`). Address and port lists with
//!   variables, `any`, negation, CIDR, ranges `a-b` / `a:b`, nested lists
//!   `[..,![..]]`; directions `->` and `<>`.
//! * Meta: `msg`, `sid`, `rev`, `gid`, `classtype` (from `classification.config`
//!   or Suricata's built-in table), `priority`, `reference`, `metadata`,
//!   `target`, `noalert`; accepted and ignored: `rawbytes`, `tag`,
//!   `prefilter`, `requires`, `bypass`, `filestore` (no effect on alerting).
//! * Payload: `content` (`!`, `|hex|`, escapes) with `nocase`, `depth`,
//!   `offset`, `distance`, `within` (constants or `byte_extract` variables),
//!   `startswith`, `endswith`, `fast_pattern` (incl. `only` and `N,M`);
//!   `uricontent`; `pcre` with the flags `i s m x A E G R` and the buffer
//!   selectors `U I P Q H D M C S Y V W` (`B`, `O` ignored), translated to the
//!   `regex` crate, or bounded backtracking for lookaround and
//!   backreferences (see [`pcre`]); `isdataat`,
//!   `byte_test`, `byte_jump`, `byte_extract`, `bsize`, `urilen`, `dsize`.
//!   Matching follows Suricata's content inspection: relative keywords anchor
//!   at the end of the previous match, earlier contents are retried at their
//!   next occurrence when a `within`/relative keyword follows, and the work per
//!   buffer is capped (like Suricata's inspection recursion limit).
//! * Sticky buffers: every [`Buffer`], by its dotted name and its legacy name,
//!   plus the legacy content modifiers (`http_uri`, `http_header`,
//!   `http_client_body`, ...), `file_data`/`file.data`, `pkt_data`, `ip.src`,
//!   `ip.dst`; transforms `dotprefix`, `to_lowercase`, `to_uppercase`,
//!   `strip_whitespace`, `compress_whitespace`, `url_decode`, `to_sha256`.
//! * Packet: `flow` (`to_server`, `to_client`, `from_client`, `from_server`,
//!   `established`, `not_established`, `stateless`; `only_stream` and
//!   `no_stream` approximated: the payload keywords of such a rule look only
//!   at `Inspect::stream`, respectively only at `Inspect::payload`, and an
//!   `only_stream` rule looks at the payload when the caller gives no
//!   stream), `flow.pkts` / `flow.bytes` (`toserver`, `toclient`, `either`;
//!   and the older `flow.pkts_toserver`-style keywords), `flags` (with
//!   `+ * !` and a mask), `itype`, `icode`, `ttl`,
//!   `ip_proto`, `sameip`, `app-layer-protocol`.
//! * State: `flowbits` (`set`, `unset`, `toggle`, `isset`, `isnotset`,
//!   `noalert`; `|` is "any", `&` is "all"), `threshold` (`limit`,
//!   `threshold`, `both`, `backoff`; tracked `by_src`, `by_dst`, `by_both`,
//!   `by_rule`, `by_flow`), `detection_filter` (incl. `unique_on src_port |
//!   dst_port`), `dataset` (`set`, `unset`, `isset`, `isnotset` over `string`
//!   (base64 lines), `md5`, `sha256` (hex lines), `ipv4`, `ip`; `load FILE`
//!   relative to the rule file; `format csv | json | ndjson | jsonline` with
//!   `value_key`/`array_key`; `match subdomain`), `datarep` (`>`, `<`,
//!   `>=`, `<=`, `==`, `!=` against `value,reputation` files).
//!
//! # What is skipped, with the reason in [`Skipped`]
//!
//! `pcre` that neither the `regex` crate nor, for lookaround,
//! backreferences, atomic groups and possessive quantifiers, the bounded
//! backtracking of `fancy-regex` can express (`\G`, `\K`, relative
//! backreferences, recursion, conditionals, callouts; see `pcre.rs`) or whose
//! compiled form exceeds the size limit; keywords that need data the caller does not provide
//! (`stream_size`, `ssl_state`, `ssl_version`, `tls.version`, certificate
//! dates, `id`, `icmp_id`, `icmp_seq`, `seq`, `ack`, `window`, `fragbits`,
//! `tos`, events such as `app-layer-event`, file keywords, DCE/SMB/Kerberos
//! and other protocol-specific keywords); `flowint`, `xbits`, `hostbits`,
//! `byte_math`, `base64_decode`, `lua`; unknown keywords and classtypes;
//! malformed rules; duplicate sids (the higher `rev` wins, as in Suricata).
//!
//! # How the caller drives it
//!
//! Call [`RuleSet::inspect`] once per packet of a flow, in order, with the
//! packet's transport payload in `payload`. When the packet completes an
//! app-layer transaction in one direction (an HTTP request or response, a DNS
//! query, a TLS handshake message carrying SNI/certificate, an SSH banner),
//! pass that transaction's buffers in the same call. Rules then behave like
//! Suricata's:
//!
//! * **Packet rules** (no sticky buffer): evaluated on every call. For TCP,
//!   pass in `stream` the in-order reassembled data of this direction that
//!   this packet made available (its payload when in order, plus data it
//!   released from the out-of-order queue; empty for a retransmission), each
//!   byte once, and `Some` for every packet of a session you reassemble.
//!   Like Suricata's raw stream inspection with its inspected-progress
//!   marker, the engine inspects stream data once: it keeps the last
//!   [`RuleSet::stream_overlap`] bytes already inspected of each direction
//!   (in [`FlowRuleState`]) in front of the new data so that patterns
//!   crossing a packet boundary are found, and does not report a match that
//!   lies entirely in that overlap (the new data is inspected on its own
//!   first, so `offset`/`depth` count from the start of the new data, or of
//!   the window for a match that needs the overlap). A payload that went into the stream is
//!   not inspected again as a packet, so a stream rule that matched once is
//!   not reported on later packets or retransmissions. Packet-only rules
//!   (`tcp-pkt`, `flow:no_stream`, `dsize`, and payload keywords without
//!   `content`/`pcre` such as `byte_test` alone) inspect every packet's
//!   `payload`. With no `stream` (UDP, or no reassembly), every rule
//!   inspects `payload`.
//! * **Transaction rules** (with sticky buffers): evaluated only in calls
//!   whose [`Buffers`] hold every buffer they use, and only in the rule's
//!   direction: explicitly from `flow:to_server/to_client`, otherwise implied
//!   by the buffers (request buffers such as `http.uri` inspect to-server,
//!   response buffers such as `http.stat_code` or certificate buffers
//!   inspect to-client, direction-neutral ones like `http.header` both).
//!   Push the current direction's values for direction-neutral buffers; in
//!   the response call you may push the request buffers again so that rules
//!   mixing request and response buffers match. A transaction rule fires at
//!   most once per call, so once per transaction and direction if the
//!   caller passes each transaction's buffers once per direction.
//!   If several transactions complete in one packet, make one call per extra
//!   transaction with [`Buffers::set_tx_only`] so packet rules do not run
//!   twice on the same packet.
//! * **IP-only rules** (protocol `ip`, ports `any`, no payload, packet or
//!   flow keywords, e.g. the blocklist rules): evaluated on the first call of
//!   each direction of a flow only, as Suricata does.
//! * App-layer protocol rules (`alert http ...`) need `ctx.app_proto` set on
//!   every call of an identified flow, not only on transaction calls.
//! * `noalert` rules are returned with [`RuleMatch::noalert`] set: apply
//!   nothing, emit nothing; they exist for their flowbits and counters.
//! * State is keyed so that it survives a rule reload: flowbits and runtime
//!   dataset changes by a hash of their names, thresholds by gid and sid.
//!   One [`GlobalRuleState`] per worker thread (the [`RuleSet`] is `Sync`
//!   and shared); the workers of one agent make theirs with
//!   [`GlobalRuleState::sharing`], so that `by_src`/`by_dst` thresholds and
//!   runtime datasets count engine-wide.
//! * For ICMP, `payload` is the data after the 8-byte ICMP header (as in
//!   Suricata); `icmp` carries type and code.
//!
//! # Cost
//!
//! Candidates come from a prefilter (the `prefilter` module): one fast
//! pattern per rule, grouped per buffer (payload/stream patterns also per
//! protocol class; the bodies and file data in one group; hashed anchors
//! for groups of many patterns, Aho-Corasick for a few), an address index
//! for header-only rules; every candidate is screened by a compact summary
//! of its header (protocol, app-layer protocol, direction, ports), and only
//! the survivors are verified, header first. With `no_payload_inspection`
//! (encrypted flows) the payload and stream are neither scanned nor
//! inspected. `inspect`
//! allocates nothing per call in steady state except for matches
//! ([`RuleMatch`] owns its strings) and for buffers with transforms. `pcre`
//! patterns are validated at load but compiled on first use. With the ET
//! Open set of the corpus (13,041 rules loaded) loading takes about 0.5 s
//! and the rule set about 30 MB; see `tests::bench_et` for the per-event
//! cost.

mod anchors;
pub mod check;
mod classify;
mod compile;
mod content;
mod dataset;
mod engine;
mod header;
mod numbers;
pub mod pcre;
mod prefilter;
mod text;
mod threshold;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

pub use header::Vars;

/// Sticky buffers, Suricata names in comments. Multi-valued buffers (SAN list,
/// several DNS queries) are pushed several times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buffer {
    DnsQuery,           // dns.query, dns_query
    TlsSni,             // tls.sni, tls_sni
    TlsCertSubject,     // tls.cert_subject, tls_cert_subject
    TlsCertIssuer,      // tls.cert_issuer, tls_cert_issuer
    TlsCertSan,         // tls.subjectaltname
    TlsCertFingerprint, // tls.cert_fingerprint (hex with ':' like Suricata)
    Ja3Hash,            // ja3.hash / ja3_hash
    Ja3String,          // ja3.string
    Ja3sHash,           // ja3s.hash
    HttpUri,            // http.uri, http_uri (normalized)
    HttpRawUri,         // http.uri.raw, http_raw_uri
    HttpMethod,         // http.method, http_method
    HttpHost,           // http.host, http_host (lower-cased hostname, no port)
    HttpRawHost,        // http.host.raw, http_raw_host
    HttpUserAgent,      // http.user_agent, http_user_agent
    HttpHeader,         // http.header, http_header (all headers "Name: value\r\n", minus cookie per Suricata)
    HttpRawHeader,      // http.header.raw, http_raw_header
    HttpHeaderNames,    // http.header_names
    HttpCookie,         // http.cookie, http_cookie
    HttpStatCode,       // http.stat_code, http_stat_code
    HttpStatMsg,        // http.stat_msg, http_stat_msg
    HttpContentType,    // http.content_type
    HttpContentLen,     // http.content_len
    HttpRequestLine,    // http.request_line
    HttpResponseLine,   // http.response_line
    HttpProtocol,       // http.protocol
    HttpServer,         // http.server
    HttpLocation,       // http.location
    HttpReferer,        // http.referer
    HttpAccept,         // http.accept
    HttpAcceptLang,     // http.accept_lang
    HttpAcceptEnc,      // http.accept_enc
    HttpConnection,     // http.connection
    HttpRequestBody,    // http.request_body, http_client_body
    HttpResponseBody,   // http.response_body, file.data / file_data in http responses, http_server_body
    SshProto,           // ssh.proto, ssh_proto
    SshSoftware,        // ssh.software, ssh_software
    // Added after the first contract (the ET set uses them):
    TlsCertSerial, // tls.cert_serial, tls_cert_serial (upper-case hex with ':' like Suricata)
    HttpStart,     // http.start, http_start (request or response line and headers, raw, up to the blank line)
    Ja3sString,    // ja3s.string
    /// file.data / file_data of protocols other than HTTP (SMTP attachments,
    /// FTP data, SMB files); in HTTP rules `file_data` reads the bodies.
    FileData,
    SshHassh,             // ssh.hassh, ssh-hassh (the client's)
    SshHasshString,       // ssh.hassh.string
    SshHasshServer,       // ssh.hassh.server
    SshHasshServerString, // ssh.hassh.server.string
}

/// Which way a buffer is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BufDir {
    ToServer,
    ToClient,
    Both,
}

impl Buffer {
    /// Every buffer, in declaration order (`ALL[b.index()] == b`).
    pub const ALL: [Buffer; 45] = [
        Buffer::DnsQuery,
        Buffer::TlsSni,
        Buffer::TlsCertSubject,
        Buffer::TlsCertIssuer,
        Buffer::TlsCertSan,
        Buffer::TlsCertFingerprint,
        Buffer::Ja3Hash,
        Buffer::Ja3String,
        Buffer::Ja3sHash,
        Buffer::HttpUri,
        Buffer::HttpRawUri,
        Buffer::HttpMethod,
        Buffer::HttpHost,
        Buffer::HttpRawHost,
        Buffer::HttpUserAgent,
        Buffer::HttpHeader,
        Buffer::HttpRawHeader,
        Buffer::HttpHeaderNames,
        Buffer::HttpCookie,
        Buffer::HttpStatCode,
        Buffer::HttpStatMsg,
        Buffer::HttpContentType,
        Buffer::HttpContentLen,
        Buffer::HttpRequestLine,
        Buffer::HttpResponseLine,
        Buffer::HttpProtocol,
        Buffer::HttpServer,
        Buffer::HttpLocation,
        Buffer::HttpReferer,
        Buffer::HttpAccept,
        Buffer::HttpAcceptLang,
        Buffer::HttpAcceptEnc,
        Buffer::HttpConnection,
        Buffer::HttpRequestBody,
        Buffer::HttpResponseBody,
        Buffer::SshProto,
        Buffer::SshSoftware,
        Buffer::SshHassh,
        Buffer::SshHasshString,
        Buffer::SshHasshServer,
        Buffer::SshHasshServerString,
        Buffer::TlsCertSerial,
        Buffer::HttpStart,
        Buffer::Ja3sString,
        Buffer::FileData,
    ];

    /// Dense index, `0..Buffer::ALL.len()`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Suricata's (dotted) name of the buffer.
    pub fn name(self) -> &'static str {
        use Buffer::*;
        match self {
            DnsQuery => "dns.query",
            TlsSni => "tls.sni",
            TlsCertSubject => "tls.cert_subject",
            TlsCertIssuer => "tls.cert_issuer",
            TlsCertSan => "tls.subjectaltname",
            TlsCertFingerprint => "tls.cert_fingerprint",
            Ja3Hash => "ja3.hash",
            Ja3String => "ja3.string",
            Ja3sHash => "ja3s.hash",
            HttpUri => "http.uri",
            HttpRawUri => "http.uri.raw",
            HttpMethod => "http.method",
            HttpHost => "http.host",
            HttpRawHost => "http.host.raw",
            HttpUserAgent => "http.user_agent",
            HttpHeader => "http.header",
            HttpRawHeader => "http.header.raw",
            HttpHeaderNames => "http.header_names",
            HttpCookie => "http.cookie",
            HttpStatCode => "http.stat_code",
            HttpStatMsg => "http.stat_msg",
            HttpContentType => "http.content_type",
            HttpContentLen => "http.content_len",
            HttpRequestLine => "http.request_line",
            HttpResponseLine => "http.response_line",
            HttpProtocol => "http.protocol",
            HttpServer => "http.server",
            HttpLocation => "http.location",
            HttpReferer => "http.referer",
            HttpAccept => "http.accept",
            HttpAcceptLang => "http.accept_lang",
            HttpAcceptEnc => "http.accept_enc",
            HttpConnection => "http.connection",
            HttpRequestBody => "http.request_body",
            HttpResponseBody => "http.response_body",
            SshProto => "ssh.proto",
            SshSoftware => "ssh.software",
            TlsCertSerial => "tls.cert_serial",
            HttpStart => "http.start",
            Ja3sString => "ja3s.string",
            FileData => "file.data",
            SshHassh => "ssh.hassh",
            SshHasshString => "ssh.hassh.string",
            SshHasshServer => "ssh.hassh.server",
            SshHasshServerString => "ssh.hassh.server.string",
        }
    }

    /// The direction in which Suricata inspects the buffer.
    pub(crate) fn dir(self) -> BufDir {
        use Buffer::*;
        match self {
            DnsQuery | TlsSni | Ja3Hash | Ja3String | HttpUri | HttpRawUri | HttpMethod | HttpHost
            | HttpRawHost | HttpUserAgent | HttpRequestLine | HttpReferer | HttpAccept | HttpAcceptLang
            | HttpAcceptEnc | HttpRequestBody | SshHassh | SshHasshString => BufDir::ToServer,
            TlsCertSubject | TlsCertIssuer | TlsCertSan | TlsCertFingerprint | TlsCertSerial | Ja3sHash
            | Ja3sString | HttpStatCode | HttpStatMsg | HttpResponseLine | HttpServer | HttpLocation
            | HttpResponseBody | SshHasshServer | SshHasshServerString => BufDir::ToClient,
            HttpHeader | HttpRawHeader | HttpHeaderNames | HttpCookie | HttpContentType | HttpContentLen
            | HttpProtocol | HttpConnection | HttpStart | SshProto | SshSoftware | FileData => BufDir::Both,
        }
    }
}

/// The app-layer transaction buffers of one inspection: `(Buffer, bytes)`
/// pairs, a buffer pushed several times when it has several values.
#[derive(Debug, Default)]
pub struct Buffers<'a> {
    items: Vec<(Buffer, &'a [u8])>,
    present: u64,
    tx_only: bool,
}

impl<'a> Buffers<'a> {
    pub fn push(&mut self, b: Buffer, data: &'a [u8]) {
        self.items.push((b, data));
        self.present |= 1u64 << b.index();
    }

    /// Every value pushed for `b`, in push order.
    pub fn get(&self, b: Buffer) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.items.iter().filter(move |(k, _)| *k == b).map(|(_, d)| *d)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether at least one value of `b` was pushed.
    pub fn has(&self, b: Buffer) -> bool {
        self.present & (1u64 << b.index()) != 0
    }

    /// Empties the set (keeps the allocation; `tx_only` is reset too).
    pub fn clear(&mut self) {
        self.items.clear();
        self.present = 0;
        self.tx_only = false;
    }

    /// Marks this inspection as an extra transaction of a packet that was
    /// already inspected: only rules with sticky buffers are evaluated.
    pub fn set_tx_only(&mut self, tx_only: bool) {
        self.tx_only = tx_only;
    }

    pub fn tx_only(&self) -> bool {
        self.tx_only
    }
}

/// App-layer protocol of the flow, as detected by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProto {
    Unknown,
    Dns,
    Tls,
    Http,
    Ssh,
    Ftp,
    Smtp,
    Smb,
    Dhcp,
    Ntp,
    Sip,
    Krb5,
    Nfs,
    Ikev2,
    Snmp,
    Tftp,
    Rdp,
    Modbus,
    Dnp3,
    Enip,
    Mqtt,
    Http2,
}

impl AppProto {
    /// Suricata's name (`app_proto` in EVE).
    pub fn name(self) -> &'static str {
        use AppProto::*;
        match self {
            Unknown => "unknown",
            Dns => "dns",
            Tls => "tls",
            Http => "http",
            Ssh => "ssh",
            Ftp => "ftp",
            Smtp => "smtp",
            Smb => "smb",
            Dhcp => "dhcp",
            Ntp => "ntp",
            Sip => "sip",
            Krb5 => "krb5",
            Nfs => "nfs",
            Ikev2 => "ike",
            Snmp => "snmp",
            Tftp => "tftp",
            Rdp => "rdp",
            Modbus => "modbus",
            Dnp3 => "dnp3",
            Enip => "enip",
            Mqtt => "mqtt",
            Http2 => "http2",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<AppProto> {
        use AppProto::*;
        Some(match s.to_ascii_lowercase().as_str() {
            "dns" => Dns,
            "tls" | "ssl" => Tls,
            "http" | "http1" => Http,
            "ssh" => Ssh,
            "ftp" => Ftp,
            "smtp" => Smtp,
            "smb" => Smb,
            "dhcp" => Dhcp,
            "ntp" => Ntp,
            "sip" => Sip,
            "krb5" => Krb5,
            "nfs" => Nfs,
            "ikev2" | "ike" => Ikev2,
            "snmp" => Snmp,
            "tftp" => Tftp,
            "rdp" => Rdp,
            "modbus" => Modbus,
            "dnp3" => Dnp3,
            "enip" => Enip,
            "mqtt" => Mqtt,
            "http2" => Http2,
            _ => return None,
        })
    }
}

/// One inspection: a packet (with its payload) and/or an app-layer
/// transaction (with buffers). See the module documentation for when to call.
#[derive(Clone, Copy)]
pub struct Inspect<'a> {
    /// Event time, microseconds since the epoch.
    pub ts_us: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 when not TCP/UDP.
    pub sport: u16,
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
    pub ttl: u8,
    /// FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80.
    pub tcp_flags: u8,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// This packet's transport payload (content/pcre/dsize/byte_* without a sticky buffer).
    pub payload: &'a [u8],
    /// In-order reassembled stream data of this direction that this packet
    /// made available, never presented in an earlier call (see the module
    /// documentation); `Some` (possibly empty) for every packet of a TCP
    /// session the caller reassembles, `None` otherwise.
    pub stream: Option<&'a [u8]>,
    /// Bytes at the start of `stream` that an earlier call inspected (the
    /// overlap the engine puts there itself; callers pass 0).
    pub stream_seen: usize,
    /// The flow's payload is not inspected any more (Suricata's
    /// `encryption-handling: track-only` on TLS application data and SSH
    /// after the key exchange): payload and stream keywords do not match,
    /// transaction buffers and packet keywords still do.
    pub no_payload_inspection: bool,
    /// Direction relative to the flow's initiator (flow:to_server / from_client).
    pub to_server: bool,
    /// TCP handshake seen (UDP: seen both ways).
    pub established: bool,
    pub app_proto: AppProto,
    /// App-layer transaction buffers completed with this event (empty otherwise).
    pub buffers: &'a Buffers<'a>,
    /// Stable per flow.
    pub flow_id: u64,
    /// Packets and bytes of the flow so far, this packet included
    /// (`[to server, to client]`), for `flow.pkts` / `flow.bytes`.
    pub flow_pkts: [u64; 2],
    pub flow_bytes: [u64; 2],
}

impl Inspect<'_> {
    /// The packet's payload went into the reassembled stream of its
    /// direction (a TCP session the caller reassembles; SYN and RST
    /// segments are not added), so stream rules see it there.
    pub(crate) fn payload_in_stream(&self) -> bool {
        self.stream.is_some()
            && self.proto == engine::PROTO_TCP
            && !self.payload.is_empty()
            && self.tcp_flags & (0x02 | 0x04) == 0
    }
}

/// Per-flow rule state (flowbits, IP-only marks); the caller keeps one per flow.
#[derive(Debug, Default, Clone)]
pub struct FlowRuleState {
    /// Set flowbits: sorted hashes of their names (stable across rule reloads).
    bits: Vec<u64>,
    /// IP-only rules already evaluated for the to-server / to-client direction.
    iponly_ts: bool,
    iponly_tc: bool,
    /// The end of the stream data inspected so far, per direction (to
    /// server, to client): at most [`RuleSet::stream_overlap`] bytes, put in
    /// front of the next stream data so that patterns crossing the boundary
    /// are seen (Suricata's raw stream progress, with an overlap).
    stream_tail: [Vec<u8>; 2],
}

impl FlowRuleState {
    /// Number of flowbits currently set.
    pub fn flowbits_set(&self) -> usize {
        self.bits.len()
    }

    pub(crate) fn is_set(&self, id: u64) -> bool {
        self.bits.binary_search(&id).is_ok()
    }

    pub(crate) fn set(&mut self, id: u64) {
        if let Err(pos) = self.bits.binary_search(&id) {
            self.bits.insert(pos, id);
        }
    }

    pub(crate) fn unset(&mut self, id: u64) {
        if let Ok(pos) = self.bits.binary_search(&id) {
            self.bits.remove(pos);
        }
    }
}

/// Counters of the engine-wide state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GlobalRuleStats {
    /// Threshold / detection_filter entries evicted at the capacity.
    pub threshold_evictions: u64,
    /// Dataset `set` operations refused because the runtime additions are full.
    pub dataset_refused: u64,
    /// Buffer inspections cut short by the work limit (treated as no match).
    pub inspection_limit_hits: u64,
}

/// Engine-wide state (thresholds, detection_filter, runtime dataset changes,
/// scratch space); bounded memory, evictions counted.
///
/// Thresholds and runtime dataset changes live in [`SharedRuleState`],
/// shared by the engines of one agent's capture workers (see
/// [`GlobalRuleState::sharing`]): a `threshold: track by_src` or a
/// `dataset:set` spans every flow, whichever worker the flow hashed to, as
/// in Suricata, whose threshold and dataset tables are global to its
/// threads. Each is locked only for the one check or change that needs it.
#[derive(Debug, Default)]
pub struct GlobalRuleState {
    pub(crate) shared: Arc<SharedRuleState>,
    pub(crate) scratch: Option<prefilter::Scratch>,
    pub(crate) stats: GlobalRuleStats,
}

/// The part of [`GlobalRuleState`] the workers of one agent share.
#[derive(Debug, Default)]
pub struct SharedRuleState {
    pub(crate) thresholds: Mutex<threshold::Table>,
    pub(crate) datasets: Mutex<dataset::Runtime>,
}

/// Locks `m`; a worker that panicked holding it left counters and sets
/// that are still usable (every change is one insert or removal).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GlobalRuleState {
    /// `threshold_capacity`: most threshold entries kept (default 65536);
    /// `dataset_capacity`: most values added at runtime by `dataset:set`
    /// over all datasets (default 65536).
    pub fn with_capacity(threshold_capacity: usize, dataset_capacity: usize) -> GlobalRuleState {
        let g = GlobalRuleState::default();
        lock(&g.shared.thresholds).set_capacity(threshold_capacity);
        lock(&g.shared.datasets).set_capacity(dataset_capacity);
        g
    }

    /// Another worker's state: the same thresholds and runtime datasets,
    /// its own scratch space and counters.
    pub fn sharing(&self) -> GlobalRuleState {
        GlobalRuleState { shared: self.shared.clone(), ..GlobalRuleState::default() }
    }

    pub fn stats(&self) -> GlobalRuleStats {
        self.stats
    }

    /// Threshold entries currently tracked.
    pub fn threshold_entries(&self) -> usize {
        lock(&self.shared.thresholds).len()
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Alert,
    Drop,
    Reject,
    Pass,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Drop => "drop",
            Action::Reject => "reject",
            Action::Pass => "pass",
        }
    }
}

/// `target:` of a rule: which side is the target of the attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertTarget {
    SrcIp,
    DestIp,
}

/// A rule that fired.
#[derive(Debug, Clone)]
pub struct RuleMatch {
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    pub msg: String,
    pub classtype: Option<String>,
    /// Classification description ("" without classtype).
    pub category: String,
    /// Priority, clamped to 1..=4.
    pub severity: u8,
    pub action: Action,
    /// `type,value` as written in the rule (`url,www.example.com`).
    pub references: Vec<String>,
    pub metadata: Vec<(String, String)>,
    /// `flowbits:noalert` or `noalert`: the caller does not emit it.
    pub noalert: bool,
    pub target: Option<AlertTarget>,
}

/// A compiled, immutable rule set.
pub struct RuleSet {
    pub(crate) engine: engine::Engine,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet").field("rules", &self.len()).finish()
    }
}

/// The outcome of loading rules.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Rule lines seen, enabled only (commented-out rules are not counted).
    pub total: usize,
    pub loaded: usize,
    /// Commented-out rules seen (not in `total`).
    pub disabled: usize,
    pub skipped: Vec<Skipped>,
    /// Per file: path, total, loaded.
    pub files: Vec<(PathBuf, usize, usize)>,
}

impl LoadReport {
    /// Skip categories with their counts, most frequent first.
    pub fn reasons(&self) -> Vec<(&str, usize)> {
        let mut m: HashMap<&str, usize> = HashMap::new();
        for s in &self.skipped {
            *m.entry(s.category.as_str()).or_default() += 1;
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

/// A rule that could not be loaded.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: usize,
    pub sid: Option<u32>,
    /// Full reason, naming the keyword or value.
    pub reason: String,
    /// Short category for the breakdown ("pcre: lookaround", "unsupported keyword `stream_size`").
    pub category: String,
}

/// Sizes of a loaded rule set, for `rules check` and the README.
#[derive(Debug, Default, Clone)]
pub struct RuleSetStats {
    pub rules: usize,
    /// Rules entered in the multi-pattern prefilter, per target name.
    pub prefiltered: Vec<(&'static str, usize)>,
    /// Rules with buffers or payload but no usable fast pattern.
    pub no_fast_pattern: usize,
    /// Header-only rules (IP-only ones are evaluated once per flow direction).
    pub header_only: usize,
    pub ip_only: usize,
    /// Rules that use each buffer (the caller must produce it for them to fire).
    pub buffers_used: Vec<(&'static str, usize)>,
    /// Rules per header protocol.
    pub protocols: Vec<(String, usize)>,
    pub pcre: usize,
    pub datasets: usize,
    /// Heap bytes of the prefilter automata and tables.
    pub prefilter_bytes: usize,
}

impl RuleSet {
    /// Loads rule files. `vars`: address/port variables (Suricata's defaults
    /// when absent). `classification`: a `classification.config` (else
    /// Suricata's built-in table). Dataset files are resolved relative to the
    /// rule file's directory. Returns every rule it could load plus one
    /// [`Skipped`] per rule it could not. Errors only when a rule file or the
    /// classification file cannot be read.
    pub fn load(
        files: &[PathBuf],
        vars: &Vars,
        classification: Option<&Path>,
    ) -> std::io::Result<(RuleSet, LoadReport)> {
        let classes = match classification {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot read `{}`: {e}", p.display()))
                })?;
                classify::Classifications::parse(&text)
            }
            None => classify::Classifications::builtin(),
        };
        let mut b = compile::Builder::new(vars, classes);
        for f in files {
            let bytes = std::fs::read(f)
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read `{}`: {e}", f.display())))?;
            let text = String::from_utf8_lossy(&bytes);
            let base = f.parent().map(Path::to_path_buf).unwrap_or_default();
            b.add_text(&text, f, &base);
        }
        Ok(b.finish())
    }

    /// Compiles rules from a string (tests, embedded rules); dataset files
    /// are resolved relative to the current directory.
    pub fn from_str(text: &str, vars: &Vars) -> (RuleSet, LoadReport) {
        Self::from_str_in(text, vars, Path::new("."))
    }

    /// Like [`RuleSet::from_str`] with dataset files resolved in `base`.
    pub fn from_str_in(text: &str, vars: &Vars, base: &Path) -> (RuleSet, LoadReport) {
        let mut b = compile::Builder::new(vars, classify::Classifications::builtin());
        b.add_text(text, Path::new("<string>"), base);
        b.finish()
    }

    pub fn len(&self) -> usize {
        self.engine.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.engine.rules.is_empty()
    }

    /// Matches one inspection. Appends fired rules (after flowbits and
    /// threshold logic) to `out`, in evaluation order. See the module
    /// documentation for what counts once.
    pub fn inspect(
        &self,
        ctx: &Inspect<'_>,
        flow: &mut FlowRuleState,
        global: &mut GlobalRuleState,
        out: &mut Vec<RuleMatch>,
    ) {
        self.engine.inspect(ctx, flow, global, out);
    }

    pub fn stats(&self) -> RuleSetStats {
        self.engine.stats()
    }

    /// Bytes of already inspected stream data kept per flow direction and
    /// inspected again in front of new data: the longest payload content
    /// of a stream rule minus one (bounded by [`MAX_STREAM_OVERLAP`]).
    pub fn stream_overlap(&self) -> usize {
        self.engine.stream_overlap
    }
}

/// Upper bound of [`RuleSet::stream_overlap`].
pub const MAX_STREAM_OVERLAP: usize = 1024;
