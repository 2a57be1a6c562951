//! Starting the real binaries on port 0 and talking to them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use secure_channel_exporter::exposition::{parse, MetricFamily, ParsedExposition, Sample};

pub const EXPORTER: &str = env!("CARGO_BIN_EXE_secure-channel-exporter");
pub const SIM: &str = env!("CARGO_BIN_EXE_secure-channel-sim");
pub const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";

/// What the exporter logs on SIGHUP (see [`Proc::settle_logs`]).
pub const SETTLE_MARK: &str = "SIGHUP: reloading";

/// A child process that is killed when dropped, with its stderr collected.
pub struct Proc {
    pub child: Child,
    pub address: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `bin` with `args` and waits for its `listening` log line.
    pub fn start(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("SECURE_CHANNEL_POOL_URL")
            .env_remove("SECURE_CHANNEL_POOL_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("msg=listening") {
                    if let Some(addr) = line
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("address="))
                    {
                        let _ = tx.send(addr.to_owned());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let address = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{bin} did not start listening; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Proc {
            child,
            address,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        // Generous: a line normally arrives in milliseconds, but the
        // machine may be busy; only a line that never comes should fail.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(line) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no log line with {needle:?}; logs:\n{}", self.logs());
    }

    /// Log lines containing `needle`.
    pub fn count_logs(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Returns once every line the exporter wrote before this call has
    /// been collected. The stderr reader is a thread of its own, so a
    /// line written before an answer may not be in `logs()` yet when the
    /// answer arrives; SIGHUP makes the exporter log [`SETTLE_MARK`]
    /// after them, and the pipe keeps the order. Exporter only (SIGHUP
    /// would stop the simulator).
    pub fn settle_logs(&self) {
        let before = self.count_logs(SETTLE_MARK);
        self.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count_logs(SETTLE_MARK) <= before {
            assert!(
                Instant::now() < deadline,
                "no {SETTLE_MARK:?} line after SIGHUP; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "no exit within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sim(args: &[&str]) -> Proc {
    let mut all = vec!["--web.listen-address", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Proc::start(SIM, &all, &[])
}

pub fn exporter_with_env(pool: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut all = vec!["--web.listen-address", "127.0.0.1:0", "--pool.url", pool];
    all.extend_from_slice(args);
    Proc::start(EXPORTER, &all, env)
}

pub fn exporter(pool: &Proc, args: &[&str]) -> Proc {
    exporter_with_env(&pool.url("/"), args, &[])
}

/// ring as the process's rustls provider, for the tests' own HTTPS
/// clients (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// GETs `url` and returns the body text.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub struct Scrape {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    pub parsed: ParsedExposition,
    pub took: Duration,
}

impl Scrape {
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.parsed.families.iter().find(|f| f.name == name)
    }

    pub fn samples(&self, name: &str) -> Vec<&Sample> {
        self.parsed
            .families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name)
            .collect()
    }

    /// The value of the one sample with `name` and (at least) `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self
            .samples(name)
            .into_iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(n, v)| s.labels.iter().any(|(ln, lv)| ln == n && lv == v))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {name}{labels:?}, found {}; body:\n{}",
            found.len(),
            self.body
        );
        found[0].value
    }

    pub fn source_up(&self, source: &str) -> f64 {
        self.value("secure_channel_exporter_source_up", &[("source", source)])
    }

    pub fn failures(&self, source: &str, reason: &str) -> f64 {
        self.value(
            "secure_channel_exporter_source_failures_total",
            &[("source", source), ("reason", reason)],
        )
    }
}

pub async fn scrape_with(exporter: &Proc, headers: &[(&str, &str)]) -> Scrape {
    let mut req = client().get(exporter.url("/metrics"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let start = Instant::now();
    let resp = req.send().await.expect("scrape request failed");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.text().await.unwrap();
    let took = start.elapsed();
    let parsed = parse(&body);
    Scrape {
        status,
        content_type,
        body,
        parsed,
        took,
    }
}

pub async fn scrape(exporter: &Proc) -> Scrape {
    scrape_with(exporter, &[]).await
}

/// Switches a simulator fault on (`on = true`) or off.
pub async fn fault(sim: &Proc, name: &str, query: &str, on: bool) {
    let url = sim.url(&format!("/sim/faults/{name}{query}"));
    let req = if on {
        client().put(url)
    } else {
        client().delete(url)
    };
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

pub async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sce-test-{}-{}",
        std::process::id(),
        name.replace('/', "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Runs `promtool check metrics` on an exposition and returns its complaints.
pub fn promtool_check_metrics(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required for these tests (Debian package `prometheus`; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && all.trim().is_empty() {
        all = format!("promtool exited with {}", out.status);
    }
    all
}
