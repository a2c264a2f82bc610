//! HTTP/1.x over the reassembled TCP stream: requests and responses paired
//! into transactions (pipelining included), headers parsed with `httparse`,
//! bodies framed by Content-Length, chunked encoding or connection close and
//! kept up to [`BODY_LIMIT`] bytes for inspection (lengths are always
//! counted in full). Response bodies sent with `Content-Encoding: gzip` or
//! `deflate` are inspected decompressed, as Suricata's `file.data` does
//! (at most two layers, output bounded by [`BODY_LIMIT`], what decodes of a
//! truncated body is kept); other encodings are inspected as sent.

use std::collections::VecDeque;

/// Body bytes kept per direction of a transaction for content inspection.
pub const BODY_LIMIT: usize = 64 * 1024;
const MAX_HEADER_BLOCK: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const MAX_PENDING_TX: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct HttpTx {
    pub id: u64,
    pub method: String,
    pub uri: String,
    pub protocol: String,
    pub request_line: Vec<u8>,
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub request_header_raw: Vec<u8>,
    pub request_body: Vec<u8>,
    pub request_body_len: u64,
    pub status: Option<u16>,
    pub status_msg: String,
    pub response_protocol: String,
    pub response_line: Vec<u8>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub response_header_raw: Vec<u8>,
    pub response_body: Vec<u8>,
    pub response_body_len: u64,
    pub request_done: bool,
    pub response_done: bool,
    /// Bytes of this transaction were missing from the capture.
    pub gap: bool,
}

fn find<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

impl HttpTx {
    pub fn request_header(&self, name: &str) -> Option<&[u8]> {
        find(&self.request_headers, name)
    }

    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        find(&self.response_headers, name)
    }

    /// Host header without the port, lower case (Suricata's `http.host`).
    /// The response body as content inspection sees it: decompressed when
    /// the response says gzip or deflate (see the module documentation).
    pub fn response_body_decoded(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.response_header("content-encoding") {
            Some(enc) => decode_body(enc, &self.response_body),
            None => std::borrow::Cow::Borrowed(&self.response_body),
        }
    }

    pub fn host(&self) -> Option<String> {
        let raw = String::from_utf8_lossy(self.request_header("host")?).trim().to_string();
        let host = if raw.starts_with('[') {
            raw.split(']').next().map(|h| format!("{h}]")).unwrap_or(raw.clone())
        } else {
            raw.rsplit_once(':')
                .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                .map(|(h, _)| h.to_string())
                .unwrap_or(raw.clone())
        };
        Some(host.to_ascii_lowercase())
    }

    /// The URI with percent-encoded unreserved characters decoded and
    /// `/./` and `/../` resolved, as Suricata's normalized `http.uri`.
    pub fn normalized_uri(&self) -> Vec<u8> {
        normalize_uri(self.uri.as_bytes())
    }

    /// `Name: value\r\n` lines of the request, without cookies (Suricata's
    /// `http.header` leaves the cookie to `http.cookie`).
    pub fn header_block(headers: &[(String, Vec<u8>)], skip: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in headers {
            if n.eq_ignore_ascii_case(skip) {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// `\r\nName\r\nName...\r\n\r\n` as Suricata's `http.header_names`.
    pub fn header_names(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut out = b"\r\n".to_vec();
        for (n, _) in headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn normalize_uri(raw: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex =
                std::str::from_utf8(&raw[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                decoded.push(b);
                i += 3;
                continue;
            }
        }
        decoded.push(raw[i]);
        i += 1;
    }
    // resolve dot segments in the path (before any query)
    let split = decoded.iter().position(|b| *b == b'?').unwrap_or(decoded.len());
    let (path, query) = decoded.split_at(split);
    let mut segs: Vec<&[u8]> = Vec::new();
    for seg in path.split(|b| *b == b'/') {
        match seg {
            b"." => {}
            b".." => {
                if segs.len() > 1 {
                    segs.pop();
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = segs.join(&b'/');
    if path.ends_with(b"/.") || path.ends_with(b"/..") {
        out.push(b'/');
    }
    out.extend_from_slice(query);
    out
}

/// Found by [`HttpState::on_data`]; the transaction is in
/// [`HttpState::tx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpEvent {
    /// Request line, headers and body are complete.
    Request(u64),
    /// The response to the transaction is complete.
    Response(u64),
}

#[derive(Debug, Default)]
enum Body {
    #[default]
    None,
    Length(u64),
    Chunked(ChunkState),
    UntilClose,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

#[derive(Debug, Default)]
struct Direction {
    buf: Vec<u8>,
    body: Body,
    /// The transaction the current body belongs to.
    tx: Option<u64>,
    failed: bool,
    /// Out of step after a stream gap: bytes are skipped up to the next
    /// line that starts a message.
    lost: bool,
}

#[derive(Debug, Default)]
pub struct HttpState {
    dirs: [Direction; 2],
    txs: VecDeque<HttpTx>,
    next_id: u64,
    pub parse_errors: u64,
    /// Transactions dropped unanswered when too many were pending.
    pub dropped_tx: u64,
}

const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"TRACE ",
    b"PATCH ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"SEARCH ",
];

/// Looks like the start of an HTTP request (client side).
pub fn probe_request(data: &[u8]) -> bool {
    METHODS.iter().any(|m| data.starts_with(m))
}

/// Looks like the start of an HTTP response (server side).
pub fn probe_response(data: &[u8]) -> bool {
    data.starts_with(b"HTTP/1.") || data.starts_with(b"HTTP/0.9")
}

impl HttpState {
    pub fn tx(&self, id: u64) -> Option<&HttpTx> {
        self.txs.iter().find(|t| t.id == id)
    }

    /// Removes finished transactions (after they are logged).
    pub fn remove(&mut self, id: u64) {
        self.txs.retain(|t| t.id != id);
    }

    /// Transactions still open (for logging at the end of the flow).
    pub fn open_transactions(&self) -> impl Iterator<Item = &HttpTx> {
        self.txs.iter()
    }

    pub fn on_data(&mut self, dir: usize, data: &[u8], events: &mut Vec<HttpEvent>) {
        if self.dirs[dir].failed {
            return;
        }
        self.dirs[dir].buf.extend_from_slice(data);
        if self.dirs[dir].lost && !self.resync(dir) {
            return;
        }
        loop {
            let progressed = match self.dirs[dir].body {
                Body::None => self.headers(dir, events),
                _ => self.body(dir, events),
            };
            if !progressed || self.dirs[dir].failed {
                return;
            }
        }
    }

    /// The stream skipped `missing` bytes the capture never saw. Inside a
    /// body of known size (a length or a chunk) the body goes on past them,
    /// counted in its length but not in its kept bytes, as libhtp does; a
    /// gap anywhere else, or running past the body, leaves the direction
    /// out of step until the next line that starts a message. Either way
    /// the transaction is marked (`gap`).
    pub fn on_gap(&mut self, dir: usize, missing: u64, events: &mut Vec<HttpEvent>) {
        if self.dirs[dir].failed || missing == 0 {
            return;
        }
        if let Some(id) = self.dirs[dir].tx
            && let Some(tx) = self.txs.iter_mut().find(|t| t.id == id)
        {
            tx.gap = true;
        }
        let in_step = self.dirs[dir].buf.is_empty() && !self.dirs[dir].lost;
        match self.dirs[dir].body {
            Body::Length(remaining) if in_step && missing < remaining => {
                self.count_body(dir, missing);
                self.dirs[dir].body = Body::Length(remaining - missing);
            }
            Body::Length(remaining) if in_step && missing == remaining => {
                self.count_body(dir, missing);
                self.finish_body(dir, events);
            }
            Body::Chunked(ChunkState::Data(remaining)) if in_step && missing <= remaining => {
                self.count_body(dir, missing);
                self.dirs[dir].body = Body::Chunked(if missing == remaining {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(remaining - missing)
                });
            }
            Body::UntilClose => self.count_body(dir, missing),
            _ => {
                // the rest of this message, and maybe the start of the
                // next, are gone: the body (if any) ends here
                if !matches!(self.dirs[dir].body, Body::None) {
                    self.finish_body(dir, events);
                }
                let d = &mut self.dirs[dir];
                d.body = Body::None;
                d.buf.clear();
                d.lost = true;
                // the response the gap swallowed the start of belongs to
                // the oldest request still waiting: it ends unanswered, so
                // that the next response is paired with its own request
                if dir == 1
                    && let Some(tx) = self.txs.iter_mut().find(|t| t.status.is_none() && !t.response_done)
                {
                    tx.response_done = true;
                    tx.gap = true;
                    events.push(HttpEvent::Response(tx.id));
                }
            }
        }
    }

    /// Counts body bytes that were not seen.
    fn count_body(&mut self, dir: usize, missing: u64) {
        let Some(id) = self.dirs[dir].tx else { return };
        if let Some(tx) = self.txs.iter_mut().find(|t| t.id == id) {
            if dir == 0 {
                tx.request_body_len += missing;
            } else {
                tx.response_body_len += missing;
            }
        }
    }

    /// Out of step: drops buffered bytes up to the first line that starts a
    /// request (direction 0) or a response; true when one was found.
    fn resync(&mut self, dir: usize) -> bool {
        let starts = |b: &[u8]| if dir == 0 { probe_request(b) } else { probe_response(b) };
        let d = &mut self.dirs[dir];
        let found = (0..d.buf.len()).find(|&i| (i == 0 || d.buf[i - 1] == b'\n') && starts(&d.buf[i..]));
        match found {
            Some(i) => {
                d.buf.drain(..i);
                d.lost = false;
                true
            }
            None => {
                // keep a tail that may be the start of a split message line
                let keep = d.buf.len() - d.buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                let keep = if keep <= 16 { keep } else { 0 };
                let cut = d.buf.len() - keep;
                d.buf.drain(..cut);
                false
            }
        }
    }

    /// The connection closed in direction `dir`: a body read until close ends.
    pub fn on_close(&mut self, dir: usize, events: &mut Vec<HttpEvent>) {
        if let Body::UntilClose = self.dirs[dir].body {
            self.finish_body(dir, events);
        }
    }

    fn headers(&mut self, dir: usize, events: &mut Vec<HttpEvent>) -> bool {
        let d = &mut self.dirs[dir];
        // skip blank lines between messages
        while d.buf.starts_with(b"\r\n") {
            d.buf.drain(..2);
        }
        if d.buf.is_empty() {
            return false;
        }
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        if dir == 0 {
            let mut req = httparse::Request::new(&mut storage);
            match req.parse(&d.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let tx = HttpTx {
                        id: self.next_id,
                        method: req.method.unwrap_or_default().to_string(),
                        uri: req.path.unwrap_or_default().to_string(),
                        protocol: format!("HTTP/1.{}", req.version.unwrap_or(1)),
                        request_line: d.buf[..d.buf.iter().position(|b| *b == b'\r').unwrap_or(0)].to_vec(),
                        request_headers: req
                            .headers
                            .iter()
                            .map(|h| (h.name.to_string(), h.value.to_vec()))
                            .collect(),
                        request_header_raw: d.buf[..n].to_vec(),
                        ..Default::default()
                    };
                    d.buf.drain(..n);
                    let body = framing(&tx.request_headers, false);
                    self.next_id += 1;
                    if self.txs.len() >= MAX_PENDING_TX {
                        self.txs.pop_front();
                        self.dropped_tx += 1;
                    }
                    let id = tx.id;
                    self.txs.push_back(tx);
                    let d = &mut self.dirs[0];
                    d.tx = Some(id);
                    d.body = body;
                    if matches!(d.body, Body::None) {
                        self.finish_body(0, events);
                    }
                    true
                }
                Ok(httparse::Status::Partial) => self.partial(dir),
                Err(_) => self.fail(dir),
            }
        } else {
            let mut resp = httparse::Response::new(&mut storage);
            match resp.parse(&d.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code.unwrap_or(0);
                    let headers: Vec<(String, Vec<u8>)> =
                        resp.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();
                    let line = d.buf[..d.buf.iter().position(|b| *b == b'\r').unwrap_or(0)].to_vec();
                    let raw = d.buf[..n].to_vec();
                    let reason = resp.reason.unwrap_or_default().to_string();
                    let version = format!("HTTP/1.{}", resp.version.unwrap_or(1));
                    d.buf.drain(..n);
                    if (100..200).contains(&code) {
                        return true; // interim response
                    }
                    // the oldest transaction without a response
                    let tx = match self.txs.iter_mut().find(|t| t.status.is_none() && !t.response_done) {
                        Some(t) => t,
                        None => {
                            // a response without a request we saw
                            let tx = HttpTx { id: self.next_id, request_done: true, ..Default::default() };
                            self.next_id += 1;
                            self.txs.push_back(tx);
                            self.txs.back_mut().unwrap_or_else(|| unreachable!())
                        }
                    };
                    tx.status = Some(code);
                    tx.status_msg = reason;
                    tx.response_protocol = version;
                    tx.response_line = line;
                    tx.response_header_raw = raw;
                    let head = tx.method.eq_ignore_ascii_case("HEAD");
                    let body =
                        if head || code == 204 || code == 304 { Body::None } else { framing(&headers, true) };
                    tx.response_headers = headers;
                    let id = tx.id;
                    let d = &mut self.dirs[1];
                    d.tx = Some(id);
                    d.body = body;
                    if matches!(d.body, Body::None) {
                        self.finish_body(1, events);
                    }
                    true
                }
                Ok(httparse::Status::Partial) => self.partial(dir),
                Err(_) => self.fail(dir),
            }
        }
    }

    fn partial(&mut self, dir: usize) -> bool {
        if self.dirs[dir].buf.len() > MAX_HEADER_BLOCK {
            return self.fail(dir);
        }
        false
    }

    fn fail(&mut self, dir: usize) -> bool {
        self.parse_errors += 1;
        let d = &mut self.dirs[dir];
        d.failed = true;
        d.buf.clear();
        false
    }

    fn append_body(&mut self, dir: usize, data: &[u8]) {
        let Some(id) = self.dirs[dir].tx else { return };
        if let Some(tx) = self.txs.iter_mut().find(|t| t.id == id) {
            let (body, len) = if dir == 0 {
                (&mut tx.request_body, &mut tx.request_body_len)
            } else {
                (&mut tx.response_body, &mut tx.response_body_len)
            };
            *len += data.len() as u64;
            let room = BODY_LIMIT.saturating_sub(body.len());
            body.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    fn finish_body(&mut self, dir: usize, events: &mut Vec<HttpEvent>) {
        let d = &mut self.dirs[dir];
        d.body = Body::None;
        let Some(id) = d.tx.take() else { return };
        if let Some(tx) = self.txs.iter_mut().find(|t| t.id == id) {
            if dir == 0 {
                tx.request_done = true;
                events.push(HttpEvent::Request(id));
            } else {
                tx.response_done = true;
                events.push(HttpEvent::Response(id));
            }
        }
    }

    fn body(&mut self, dir: usize, events: &mut Vec<HttpEvent>) -> bool {
        let body = std::mem::take(&mut self.dirs[dir].body);
        match body {
            Body::None => false,
            Body::UntilClose => {
                let data = std::mem::take(&mut self.dirs[dir].buf);
                self.append_body(dir, &data);
                self.dirs[dir].body = Body::UntilClose;
                false
            }
            Body::Length(remaining) => {
                let take = (remaining as usize).min(self.dirs[dir].buf.len());
                let data: Vec<u8> = self.dirs[dir].buf.drain(..take).collect();
                self.append_body(dir, &data);
                let left = remaining - take as u64;
                if left == 0 {
                    self.finish_body(dir, events);
                    true
                } else {
                    self.dirs[dir].body = Body::Length(left);
                    false
                }
            }
            Body::Chunked(state) => self.chunked(dir, state, events),
        }
    }

    fn chunked(&mut self, dir: usize, mut state: ChunkState, events: &mut Vec<HttpEvent>) -> bool {
        loop {
            let buf = &mut self.dirs[dir].buf;
            match state {
                ChunkState::Size => {
                    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > 1024 {
                            return self.fail(dir);
                        }
                        self.dirs[dir].body = Body::Chunked(state);
                        return false;
                    };
                    let line = String::from_utf8_lossy(&buf[..eol]).to_string();
                    buf.drain(..eol + 2);
                    let size_text = line.split(';').next().unwrap_or("").trim();
                    let Ok(size) = u64::from_str_radix(size_text, 16) else {
                        return self.fail(dir);
                    };
                    state = if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                }
                ChunkState::Data(remaining) => {
                    let take = (remaining as usize).min(buf.len());
                    let data: Vec<u8> = buf.drain(..take).collect();
                    self.append_body(dir, &data);
                    let left = remaining - take as u64;
                    if left > 0 {
                        self.dirs[dir].body = Body::Chunked(ChunkState::Data(left));
                        return false;
                    }
                    state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        self.dirs[dir].body = Body::Chunked(state);
                        return false;
                    }
                    buf.drain(..2);
                    state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > MAX_HEADER_BLOCK {
                            return self.fail(dir);
                        }
                        self.dirs[dir].body = Body::Chunked(state);
                        return false;
                    };
                    buf.drain(..eol + 2);
                    if eol == 0 {
                        self.finish_body(dir, events);
                        return true;
                    }
                }
            }
        }
    }
}

/// Content codings undone for inspection, at most this many.
const MAX_DECODE_LAYERS: usize = 2;

/// Undoes the content codings of `enc` (last applied first). A coding it
/// does not know, or one whose data does not decode at all, leaves the body
/// as it was at that layer; a stream cut short (the body limit, a lost
/// segment) keeps what decoded.
fn decode_body<'a>(enc: &[u8], body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    let enc = String::from_utf8_lossy(enc).to_ascii_lowercase();
    let mut out: Cow<'a, [u8]> = Cow::Borrowed(body);
    for (layer, coding) in enc.rsplit(',').map(str::trim).filter(|c| !c.is_empty()).enumerate() {
        if layer >= MAX_DECODE_LAYERS {
            break;
        }
        let decoded = match coding {
            "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&out[..])),
            // "deflate" is zlib-wrapped by the RFC; servers that send raw
            // deflate are common, so both are tried (as libhtp does)
            "deflate" => inflate(flate2::read::ZlibDecoder::new(&out[..]))
                .or_else(|| inflate(flate2::read::DeflateDecoder::new(&out[..]))),
            "identity" => continue,
            _ => None,
        };
        match decoded {
            Some(d) => out = Cow::Owned(d),
            None => break,
        }
    }
    out
}

/// Reads a decoder to its end or its first error, at most [`BODY_LIMIT`]
/// bytes; `None` when nothing decoded.
fn inflate(r: impl std::io::Read) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    // on an error, what was read so far stays in `out`
    let _ = r.take(BODY_LIMIT as u64).read_to_end(&mut out);
    (!out.is_empty()).then_some(out)
}

/// How a message body is delimited.
fn framing(headers: &[(String, Vec<u8>)], response: bool) -> Body {
    if find(headers, "transfer-encoding")
        .is_some_and(|v| String::from_utf8_lossy(v).to_ascii_lowercase().contains("chunked"))
    {
        return Body::Chunked(ChunkState::Size);
    }
    if let Some(v) = find(headers, "content-length") {
        return match String::from_utf8_lossy(v).trim().parse::<u64>() {
            Ok(0) => Body::None,
            Ok(n) => Body::Length(n),
            Err(_) => Body::None,
        };
    }
    if response { Body::UntilClose } else { Body::None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_and_chunked_response() {
        let mut s = HttpState::default();
        let mut ev = Vec::new();
        let req = b"GET /a?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: t\r\nCookie: s=1\r\n\r\nPOST /b HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\nhello";
        for chunk in req.chunks(9) {
            s.on_data(0, chunk, &mut ev);
        }
        assert_eq!(ev, vec![HttpEvent::Request(0), HttpEvent::Request(1)]);
        let tx = s.tx(0).unwrap();
        assert_eq!((tx.method.as_str(), tx.uri.as_str()), ("GET", "/a?x=1"));
        assert_eq!(tx.host().as_deref(), Some("example.com"));
        assert_eq!(s.tx(1).unwrap().request_body, b"hello");
        ev.clear();
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nuid\r\n5\r\n=0(ro\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
        s.on_data(1, resp, &mut ev);
        assert_eq!(ev, vec![HttpEvent::Response(0), HttpEvent::Response(1)]);
        assert_eq!(s.tx(0).unwrap().response_body, b"uid=0(ro");
        assert_eq!(s.tx(1).unwrap().status, Some(404));
    }

    /// A gap inside a body of known length keeps the direction in step; a
    /// gap that swallows the start of a response leaves its request
    /// unanswered and the next response finds its own request.
    #[test]
    fn gaps_keep_step_inside_bodies_and_resynchronise_otherwise() {
        let mut h = HttpState::default();
        let mut ev = Vec::new();
        h.on_data(0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", &mut ev);
        h.on_data(0, b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n", &mut ev);
        h.on_data(1, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", &mut ev);
        h.on_gap(1, 5, &mut ev); // inside /a's body
        h.on_data(1, b"hij", &mut ev);
        // /b's response head is lost with the gap; then /c's arrives
        h.on_data(1, b"HTTP/1.1 200 OK\r\nContent-Le", &mut ev);
        h.on_gap(1, 40, &mut ev);
        h.on_data(1, b"ody of b\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", &mut ev);
        let tx = |uri: &str| h.open_transactions().find(|t| t.uri == uri).unwrap();
        let a = tx("/a");
        assert_eq!((a.status, a.response_body_len, a.response_done, a.gap), (Some(200), 10, true, true));
        assert_eq!(a.response_body, b"abhij", "only the bytes seen are kept");
        let b = tx("/b");
        assert_eq!((b.status, b.response_done, b.gap), (None, true, true));
        assert_eq!(tx("/c").status, Some(404));
        assert_eq!(ev.iter().filter(|e| matches!(e, HttpEvent::Response(_))).count(), 3);
        // a gap in a chunk keeps step as well; one in the chunk size does not
        let mut h = HttpState::default();
        let mut ev = Vec::new();
        h.on_data(0, b"GET / HTTP/1.1\r\n\r\n", &mut ev);
        h.on_data(1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nab", &mut ev);
        h.on_gap(1, 4, &mut ev);
        h.on_data(1, b"gh\r\n0\r\n\r\n", &mut ev);
        let t = h.open_transactions().next().unwrap();
        assert_eq!((t.response_done, t.response_body_len), (true, 8));
        // a gap that ends exactly with a chunk's data
        let mut h = HttpState::default();
        let mut ev = Vec::new();
        h.on_data(0, b"GET / HTTP/1.1\r\n\r\n", &mut ev);
        h.on_data(1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab", &mut ev);
        h.on_gap(1, 2, &mut ev);
        h.on_data(1, b"\r\n3\r\nxyz\r\n0\r\n\r\n", &mut ev);
        let t = h.open_transactions().next().unwrap();
        assert_eq!(
            (t.response_done, t.response_body_len, t.response_body.as_slice()),
            (true, 7, &b"abxyz"[..])
        );
    }

    #[test]
    fn response_until_close_and_head() {
        let mut s = HttpState::default();
        let mut ev = Vec::new();
        s.on_data(0, b"HEAD / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", &mut ev);
        s.on_data(1, b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody", &mut ev);
        assert!(ev.contains(&HttpEvent::Response(0)));
        assert!(!ev.contains(&HttpEvent::Response(1)));
        s.on_close(1, &mut ev);
        assert!(ev.contains(&HttpEvent::Response(1)));
        assert_eq!(s.tx(1).unwrap().response_body, b"body");
    }

    #[test]
    fn compressed_response_bodies_are_inspected_decoded() {
        use std::io::Write;
        let mut page = b"<html><script>eval(unescape('%75'))</script>".to_vec();
        for i in 0u64..2000 {
            page.extend_from_slice(
                format!("<p id={i}>{}</p>", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40).as_bytes(),
            );
        }
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&page).unwrap();
            e.finish().unwrap()
        };
        let zlib = {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&page).unwrap();
            e.finish().unwrap()
        };
        let raw = {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&page).unwrap();
            e.finish().unwrap()
        };
        for (enc, body) in [("gzip", &gz), ("x-gzip", &gz), ("deflate", &zlib), ("deflate", &raw)] {
            let mut s = HttpState::default();
            let mut ev = Vec::new();
            s.on_data(0, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &mut ev);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: {enc}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.on_data(1, &[head.as_bytes(), body].concat(), &mut ev);
            let tx = s.tx(0).unwrap();
            assert_eq!(tx.response_body, *body, "kept as sent");
            assert_eq!(tx.response_body_len, body.len() as u64);
            assert_eq!(&tx.response_body_decoded()[..], &page[..], "{enc}");
        }
        // two layers; a truncated stream keeps what decoded; garbage and
        // unknown codings are inspected as sent
        let twice = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&gz).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(&decode_body(b"gzip, gzip", &twice)[..], &page[..]);
        assert_eq!(&decode_body(b"GZIP,identity", &gz)[..], &page[..]);
        let cut = decode_body(b"gzip", &gz[..gz.len() / 2]);
        assert!(!cut.is_empty() && page.starts_with(&cut), "{} bytes", cut.len());
        assert_eq!(&decode_body(b"gzip", b"not gzip at all")[..], b"not gzip at all");
        assert_eq!(&decode_body(b"br", &gz)[..], &gz[..]);
        // a bomb is bounded by the body limit
        let bomb = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&vec![b'A'; 10 << 20]).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(decode_body(b"gzip", &bomb).len(), BODY_LIMIT);
    }

    #[test]
    fn uri_normalization() {
        assert_eq!(normalize_uri(b"/a/./b/../c%2Ed?q=%41"), b"/a/c.d?q=A");
        assert_eq!(normalize_uri(b"/../../etc/passwd"), b"/etc/passwd");
        assert_eq!(normalize_uri(b"%"), b"%");
        assert_eq!(normalize_uri(b"/x%4"), b"/x%4");
    }

    #[test]
    fn garbage_never_panics_and_is_counted() {
        let mut s = HttpState::default();
        s.on_data(0, b"\x00\x01\x02 not http\r\n\r\n", &mut Vec::new());
        assert_eq!(s.parse_errors, 1);
        let mut s = HttpState::default();
        s.on_data(1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", &mut Vec::new());
        assert_eq!(s.parse_errors, 1);
    }
}
