//! The HTTP/1 wire as the backend sees it, for the smuggling and hop-by-hop tests: a raw
//! backend on 127.0.0.1:0 that records every byte the gateway wrote upstream and parses the
//! requests strictly (one `Content-Length`, or `Transfer-Encoding` exactly `chunked`, never
//! both), answering each with a scripted raw response; and a raw HTTP/1 exchange with the
//! gateway (a request written as bytes, the answers read back as bytes).
//! Used next to `tests/support` and `tests/http_support`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as it crossed the wire to the backend.
#[derive(Clone, Debug)]
pub struct WireRequest {
    /// The request line, e.g. `POST /a HTTP/1.1`.
    pub line: String,
    /// Header lines in order, names lower-cased, values as sent (trimmed).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
    /// `Content-Length` or `Transfer-Encoding: chunked`, or none.
    pub framing: Framing,
    /// Bytes this request took on the wire, head and body.
    pub wire_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length,
    Chunked,
}

impl WireRequest {
    /// The path of the request line.
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    /// Every value of header `name` (lower-case), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

#[derive(Default)]
struct State {
    connections: AtomicUsize,
    bytes: AtomicUsize,
    requests: Mutex<Vec<WireRequest>>,
    /// What the strict parser refused: a request no backend could frame unambiguously.
    violations: Mutex<Vec<String>>,
}

/// A raw HTTP/1 backend; see the module documentation.
#[derive(Clone)]
pub struct WireBackend {
    pub addr: SocketAddr,
    state: Arc<State>,
}

/// `200`, `content-length: 2`, `ok`.
pub const OK_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

impl WireBackend {
    /// A backend answering every request with `response` (raw bytes, a whole response).
    pub async fn start(response: &'static [u8]) -> WireBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(st.clone(), tcp, response));
            }
        });
        WireBackend { addr, state }
    }

    pub fn requests(&self) -> Vec<WireRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every byte received, on all connections.
    pub fn bytes(&self) -> usize {
        self.state.bytes.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }

    /// Asserts that the backend received exactly the requests whose paths are `paths`, each
    /// framed unambiguously, and not one byte besides them: nothing smuggled behind a body,
    /// no partial request.
    pub fn assert_exactly(&self, what: &str, paths: &[&str]) -> Vec<WireRequest> {
        let requests = self.requests();
        let got: Vec<&str> = requests.iter().map(|r| r.path()).collect();
        assert_eq!(
            got, paths,
            "{what}: requests the backend received: {requests:#?}"
        );
        assert!(
            self.violations().is_empty(),
            "{what}: ambiguous framing reached the backend: {:?}",
            self.violations()
        );
        let framed: usize = requests.iter().map(|r| r.wire_len).sum();
        assert_eq!(
            self.bytes(),
            framed,
            "{what}: the backend received bytes beyond its requests: {requests:#?}"
        );
        requests
    }
}

/// A buffered reader that counts what it reads.
struct Wire {
    tcp: TcpStream,
    buf: Vec<u8>,
    state: Arc<State>,
}

impl Wire {
    /// Reads more; false at EOF or error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.state.bytes.fetch_add(n, Ordering::SeqCst);
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Takes bytes up to and including `delim`; `None` at EOF first.
    async fn take_until(&mut self, delim: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(delim.len()).position(|w| w == delim) {
                return Some(self.buf.drain(..i + delim.len()).collect());
            }
            if self.buf.len() > 64 * 1024 || !self.fill().await {
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }
}

async fn serve(state: Arc<State>, tcp: TcpStream, response: &'static [u8]) {
    let mut wire = Wire {
        tcp,
        buf: Vec::new(),
        state: state.clone(),
    };
    loop {
        match read_request(&mut wire).await {
            Ok(Some(req)) => {
                state.requests.lock().unwrap().push(req);
                if wire.tcp.write_all(response).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(violation) => {
                state.violations.lock().unwrap().push(violation);
                return;
            }
        }
    }
}

/// One request, strictly framed; `Ok(None)` at a clean EOF between requests.
async fn read_request(wire: &mut Wire) -> Result<Option<WireRequest>, String> {
    let Some(head) = wire.take_until(b"\r\n\r\n").await else {
        return match wire.buf.is_empty() {
            true => Ok(None),
            false => Err(format!(
                "partial head: {:?}",
                String::from_utf8_lossy(&wire.buf)
            )),
        };
    };
    let text = String::from_utf8(head.clone()).map_err(|_| "head not UTF-8".to_string())?;
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let line = lines.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            return Err(format!("header line without a colon: {l:?}"));
        };
        if name.is_empty() || name.trim() != name {
            return Err(format!("header name with whitespace: {l:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let values = |n: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (te, cl) = (values("transfer-encoding"), values("content-length"));
    let mut req = WireRequest {
        line,
        headers: headers.clone(),
        body: Vec::new(),
        framing: Framing::None,
        wire_len: head.len(),
    };
    match (te.as_slice(), cl.as_slice()) {
        ([], []) => {}
        ([], [len]) => {
            let n: usize = len.parse().map_err(|_| format!("content-length {len:?}"))?;
            req.body = wire.take(n).await.ok_or("body cut short")?;
            req.wire_len += n;
            req.framing = Framing::Length;
        }
        ([te], []) if te.eq_ignore_ascii_case("chunked") => {
            req.framing = Framing::Chunked;
            loop {
                let size_line = wire.take_until(b"\r\n").await.ok_or("chunk size cut")?;
                req.wire_len += size_line.len();
                let size = String::from_utf8_lossy(&size_line);
                let size = size.trim_end().split(';').next().unwrap_or_default();
                let n = usize::from_str_radix(size, 16).map_err(|_| format!("chunk {size:?}"))?;
                if n == 0 {
                    // Trailers, then the blank line.
                    loop {
                        let t = wire.take_until(b"\r\n").await.ok_or("trailers cut")?;
                        req.wire_len += t.len();
                        if t == b"\r\n" {
                            break;
                        }
                    }
                    break;
                }
                let data = wire.take(n + 2).await.ok_or("chunk cut")?;
                req.wire_len += n + 2;
                req.body.extend_from_slice(&data[..n]);
            }
        }
        (te, cl) => {
            return Err(format!(
                "ambiguous framing: transfer-encoding {te:?}, content-length {cl:?}"
            ));
        }
    }
    Ok(Some(req))
}

/// Writes `request` (raw bytes) on `io`, then reads until the gateway closes the connection
/// (EOF or error), which it must do within 5 s: everything the client received.
pub async fn exchange<S>(io: &mut S, request: &[u8]) -> Vec<u8>
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    io.write_all(request).await.unwrap();
    io.flush().await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the gateway kept the connection open 5 s after {:?}; read so far: {:?}",
        String::from_utf8_lossy(request),
        String::from_utf8_lossy(&out)
    );
    out
}

/// One HTTP/1 response as the client read it.
#[derive(Debug)]
pub struct WireResponse {
    pub status: u16,
    /// Header lines, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WireResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

/// Splits what a client read into its HTTP/1 responses (framed by `content-length` or
/// `transfer-encoding: chunked`); panics on bytes that are not a response.
pub fn responses(raw: &[u8]) -> Vec<WireResponse> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("not a response head: {:?}", String::from_utf8_lossy(rest)));
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("status line of {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut r = WireResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if r.header("transfer-encoding") == Some("chunked") {
            loop {
                let eol = rest
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("chunk size");
                let size = usize::from_str_radix(&String::from_utf8_lossy(&rest[..eol]), 16)
                    .expect("chunk size");
                rest = &rest[eol + 2..];
                if size == 0 {
                    let end = rest
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .expect("trailers");
                    rest = &rest[end + 2..];
                    break;
                }
                r.body.extend_from_slice(&rest[..size]);
                rest = &rest[size + 2..];
            }
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            r.body = rest[..len].to_vec();
            rest = &rest[len..];
        }
        out.push(r);
    }
    out
}
