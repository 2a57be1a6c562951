//! A pool whose every answer the test chooses: fixed bodies and status
//! codes per document, documents that hang until the test releases them,
//! and a count of the requests of each document (so tests wait for events
//! such as "the pool has been asked", never for time).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One document's answer.
#[derive(Clone)]
pub struct Answer {
    pub code: u16,
    pub body: Arc<String>,
    /// Held until [`FakePool::release`].
    pub hang: bool,
    /// The Content-Type sent (none when empty); the document's usual one
    /// when `None`.
    pub content_type: Option<&'static str>,
}

impl Answer {
    pub fn ok(body: impl Into<String>) -> Self {
        Self {
            code: 200,
            body: Arc::new(body.into()),
            hang: false,
            content_type: None,
        }
    }

    pub fn code(code: u16, body: impl Into<String>) -> Self {
        Self {
            code,
            body: Arc::new(body.into()),
            hang: false,
            content_type: None,
        }
    }

    pub fn hanging(mut self) -> Self {
        self.hang = true;
        self
    }

    pub fn with_content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }
}

pub const HEALTHY: &str = r#"{"status":"healthy","timestamp":"2026-12-01T00:00:00Z","pool_healthy":true,"active_connections":2}"#;
pub const NATIVE: &str = "# HELP secure_channel_errors_total Failures.\n# TYPE secure_channel_errors_total counter\nsecure_channel_errors_total{endpoint=\"e:443\"} 3\n";

pub fn status(connections: usize) -> String {
    let list: Vec<String> = (1..=connections)
        .map(|i| {
            format!(
                r#"{{"connection_id":{i},"errors":{},"reconnects":0,"p95_latency_ms":0}}"#,
                i % 3
            )
        })
        .collect();
    format!(
        r#"{{"endpoint":"e:443","active_connections":{connections},"connections":[{}]}}"#,
        list.join(",")
    )
}

struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

pub struct FakePool {
    pub address: String,
    counts: Arc<[AtomicU64; 3]>,
    gate: Arc<Gate>,
    stop: Arc<AtomicBool>,
}

/// Reads a request's head, byte by byte so nothing after it is consumed:
/// the head and the request target, or `None` when the client went away.
pub fn read_request_head(stream: &mut impl Read) -> Option<(String, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    Some((head, path))
}

fn index(path: &str) -> usize {
    if path.ends_with("/status/connections") {
        0
    } else if path.ends_with("/healthz") {
        1
    } else {
        2
    }
}

impl FakePool {
    /// Answers status, health and metrics as given.
    pub fn start(answers: [Answer; 3]) -> FakePool {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let gate = Arc::new(Gate {
            open: Mutex::new(false),
            opened: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(answers);
        let (counts2, gate2, stop2) = (counts.clone(), gate.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let (answers, counts, gate) = (answers.clone(), counts2.clone(), gate2.clone());
                std::thread::spawn(move || {
                    let Some((_, path)) = read_request_head(&mut stream) else {
                        return;
                    };
                    let i = index(&path);
                    counts[i].fetch_add(1, Ordering::SeqCst);
                    let answer = &answers[i];
                    if answer.hang {
                        let mut open = gate.open.lock().unwrap();
                        while !*open {
                            open = gate.opened.wait(open).unwrap();
                        }
                    }
                    let ctype = answer.content_type.unwrap_or(if i == 2 {
                        "text/plain; version=0.0.4"
                    } else {
                        "application/json"
                    });
                    // An empty type means no Content-Type header at all.
                    let ctype_line = if ctype.is_empty() {
                        String::new()
                    } else {
                        format!("Content-Type: {ctype}\r\n")
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {} X\r\n{ctype_line}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        answer.code,
                        answer.body.len()
                    );
                    let _ = stream.write_all(answer.body.as_bytes());
                });
            }
        });
        FakePool {
            address,
            counts,
            gate,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Requests received so far: status, health, metrics.
    pub fn requests(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.counts[i].load(Ordering::SeqCst))
    }

    /// Waits until document `doc` (0 status, 1 health, 2 metrics) has been
    /// asked for at least `n` times.
    pub fn wait_for_requests(&self, doc: usize, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.counts[doc].load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the pool was not asked: {:?}",
                self.requests()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets every hanging answer go, now and from now on.
    pub fn release(&self) {
        *self.gate.open.lock().unwrap() = true;
        self.gate.opened.notify_all();
    }
}

impl Drop for FakePool {
    fn drop(&mut self) {
        self.release();
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(&self.address);
    }
}
