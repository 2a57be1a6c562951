//! A fake pool for tests: plain tokio TcpListener and hand-written HTTP/1.1.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const STATUS_SYSTEMTIME: &str = include_str!("../fixtures/status_systemtime.json");
pub const STATUS_RFC3339: &str = include_str!("../fixtures/status_rfc3339.json");
pub const HEALTH_HEALTHY: &str = include_str!("../fixtures/health_healthy.json");
pub const HEALTH_UNHEALTHY: &str = include_str!("../fixtures/real_busy_health.json");
pub const NATIVE: &str = include_str!("../fixtures/real_quiet_native.txt");

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete answer with Content-Length.
    Http {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// A chunked answer (no Content-Length).
    Chunked { status: u16, chunks: Vec<Vec<u8>> },
    /// Close the connection with a TCP reset, without answering.
    Reset,
    /// Answer after a delay.
    Delay(Duration, Box<Reply>),
    /// Bytes written as they are, then close.
    Raw(Vec<u8>),
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Reply::Http {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// A body without Content-Type, like the pool's /metrics and 401s.
    pub fn text(status: u16, body: &str) -> Self {
        Reply::Http {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self::text(status, "")
    }

    pub fn delayed(self, d: Duration) -> Self {
        Reply::Delay(d, Box::new(self))
    }
}

/// The real pool's routing: documents with the token check of the
/// published pool, 404 for anything else.
pub fn pool_routes(
    token: Option<&'static str>,
    status: &'static str,
    health: (u16, &'static str),
) -> impl Fn(&Request, usize) -> Reply + Send + Sync + 'static {
    move |req, _| {
        let auth = || -> Option<Reply> {
            let want = token?;
            match req.header("x-auth-token") {
                None => Some(Reply::text(
                    401,
                    "Unauthorized: Missing X-Auth-Token header",
                )),
                Some(got) if got != want => Some(Reply::text(401, "Unauthorized: Invalid token")),
                Some(_) => None,
            }
        };
        match req.path.as_str() {
            "/status/connections" => auth().unwrap_or_else(|| Reply::json(200, status)),
            "/metrics" => auth().unwrap_or_else(|| Reply::text(200, NATIVE)),
            "/healthz" => Reply::json(health.0, health.1),
            _ => Reply::empty(404),
        }
    }
}

type Handler = Arc<dyn Fn(&Request, usize) -> Reply + Send + Sync>;

/// A fake pool listening on 127.0.0.1.
pub struct FakePool {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    count: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FakePool {
    /// Starts a server answering each request with `handler(request, n)`
    /// where `n` counts requests from 0.
    pub async fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::new(handler))
    }

    /// Serves on an existing listener (to restart on the same port).
    pub async fn start_on(
        addr: SocketAddr,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        Self::serve(listener, Arc::new(handler))
    }

    fn serve(listener: TcpListener, handler: Handler) -> Self {
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (r, c) = (requests.clone(), count.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, r, c) = (handler.clone(), r.clone(), c.clone());
                tokio::spawn(async move {
                    let _ = connection(stream, handler, r, c).await;
                });
            }
        });
        Self {
            addr,
            requests,
            count,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Stops listening (new connections are refused).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for FakePool {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(
    mut stream: TcpStream,
    handler: Handler,
    requests: Arc<Mutex<Vec<Request>>>,
    count: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let request = Request {
        method,
        path,
        headers,
    };
    requests.lock().unwrap().push(request.clone());
    let n = count.fetch_add(1, Ordering::SeqCst);
    let reply = handler(&request, n);
    write_reply(&mut stream, reply).await
}

async fn write_reply(stream: &mut TcpStream, mut reply: Reply) -> std::io::Result<()> {
    while let Reply::Delay(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    match reply {
        Reply::Http {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str(&format!(
                "content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            ));
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
        }
        Reply::Chunked { status, chunks } => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                reason(status)
            );
            stream.write_all(head.as_bytes()).await?;
            for c in chunks {
                stream
                    .write_all(format!("{:x}\r\n", c.len()).as_bytes())
                    .await?;
                stream.write_all(&c).await?;
                stream.write_all(b"\r\n").await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
        }
        Reply::Reset => {
            stream.set_zero_linger()?;
            return Ok(());
        }
        Reply::Raw(bytes) => stream.write_all(&bytes).await?,
        Reply::Delay(..) => unreachable!(),
    }
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Other",
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "scc-test-{}-{}-{}",
            name,
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
