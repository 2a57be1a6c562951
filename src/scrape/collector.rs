//! One scrape end to end: fresh reads of the pool's three documents from
//! its observer within the deadline, the counters that live across
//! scrapes, and the translation rendered in the negotiated format.
//!
//! The observer ([`crate::pool::observer`]) fetches, shares fetches in
//! flight with every other reader (API calls included), counts and logs.
//! Here, scrapes that arrive while a scrape is collecting share its
//! documents and its rendering. Nothing outlives the scrapes that use it:
//! a scrape arriving after the documents came starts a new read, so what
//! is served is never older than the scrape itself.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::exposition::{buffer, compress, Encoder, Encoding, Families, Format};
use crate::pool::Limits;
use crate::pool::{Document, Outcome, PoolClient, PoolObserver, PoolSettings, Redactor};
use crate::scrape::self_metrics::SourceMetrics;
use crate::scrape::translate::{
    write_scrape, BuildInfo, ConnectionFilter, Snapshot, SourceCounters, SourceOutcome,
    TranslateOptions,
};

/// How long a status fetch vouches for readiness before `/ready` asks again.
pub const READINESS_CACHE: Duration = Duration::from_secs(5);

pub struct Collector {
    observer: PoolObserver,
    max_connections: usize,
    limits: Limits,
    connections: ConnectionFilter,
    pool_timeout: Duration,
    counters: Mutex<SourceCounters>,
    sources: Arc<SourceMetrics>,
    /// The fetch in flight, for scrapes that arrive meanwhile to join.
    in_flight: Mutex<Option<Flight>>,
    next_flight: AtomicU64,
    /// Length of the last answer rendered, to take a buffer that fits.
    last_answer_len: AtomicUsize,
}

struct Flight {
    id: u64,
    deadline: Instant,
    /// Scrapes that joined it so far.
    joiners: Arc<AtomicUsize>,
    /// `None` until the fetch completes; closed without a value when the
    /// scrape that drove it was cancelled.
    result: watch::Receiver<Option<Arc<Collected>>>,
}

/// The documents of one fetch, shared by every scrape that joined it,
/// with the renderings made of them so far.
pub struct Collected {
    snapshot: Snapshot,
    /// Scrapes answered with it; a lone scrape skips the shared rendering.
    sharers: usize,
    /// One per format, reused while the counters and fallback endpoint it
    /// was made with still hold, with its compressed forms.
    rendered: Mutex<[Option<Rendered>; 2]>,
}

struct Rendered {
    counters: SourceCounters,
    fallback: Option<String>,
    /// `SourceMetrics::generation` when it was rendered.
    sources: u64,
    /// `Families::version` of the extra families it was rendered with.
    extra: u64,
    body: Bytes,
    /// gzip and zstd, each made by the first scrape that asked for it.
    compressed: [Option<Bytes>; 2],
}

impl Collected {
    /// `sharers`: how many scrapes will be answered with it.
    pub fn new(snapshot: Snapshot, sharers: usize) -> Self {
        Self {
            snapshot,
            sharers,
            rendered: Mutex::new([None, None]),
        }
    }
}

impl Deref for Collected {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// Clears the in-flight slot when the fetch that owns it ends or is
/// cancelled, so that waiting scrapes never wait on a fetch nobody drives.
struct FlightGuard<'a> {
    slot: &'a Mutex<Option<Flight>>,
    id: u64,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|f| f.id == self.id) {
            *slot = None;
        }
    }
}

/// The answer of `/ready`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub pool_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub checked_seconds_ago: f64,
}

impl Collector {
    /// The collector of one pool, and that pool's observer, which every
    /// other feature reading the pool shares ([`observer`](Self::observer)).
    pub fn new(client: PoolClient, settings: PoolSettings, redactor: Redactor) -> Self {
        let sources = Arc::new(SourceMetrics::default());
        let observer = PoolObserver::new(client, settings, redactor).with_sink(sources.clone());
        Self {
            observer,
            max_connections: settings.max_connections,
            limits: settings.limits,
            connections: ConnectionFilter::All,
            pool_timeout: settings.timeout,
            counters: Mutex::new(SourceCounters::default()),
            sources,
            in_flight: Mutex::new(None),
            next_flight: AtomicU64::new(0),
            last_answer_len: AtomicUsize::new(0),
        }
    }

    /// The pool's observer: the API and the status page read through it.
    pub fn observer(&self) -> &PoolObserver {
        &self.observer
    }

    /// Which connections get per-connection series (`--collector.connections`).
    pub fn with_connection_filter(mut self, filter: ConnectionFilter) -> Self {
        self.connections = filter;
        self
    }

    pub fn pool_url(&self) -> &str {
        self.observer.pool_url()
    }

    pub fn pool_timeout(&self) -> Duration {
        self.pool_timeout
    }

    /// Counts an answer sent in `encoding`.
    pub fn count_answer(&self, encoding: Encoding) {
        self.sources.count_answer(encoding);
    }

    /// The pool's three documents for a scrape that must be answered by
    /// `deadline`: the fetch already in flight when there is one that ends
    /// no later than `deadline`, else a new fetch.
    ///
    /// A scrape with a shorter deadline than the fetch in flight starts its
    /// own rather than wait past its deadline or be answered with sources
    /// marked as timed out that never were: it asks the pool as a lone
    /// scrape would. Later arrivals join the newest fetch that fits them.
    pub async fn collect(&self, deadline: Instant) -> Arc<Collected> {
        loop {
            let joined = {
                let mut slot = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                match slot.as_ref() {
                    Some(flight) if flight.deadline <= deadline => {
                        flight.joiners.fetch_add(1, Ordering::Relaxed);
                        Ok(flight.result.clone())
                    }
                    _ => {
                        let (tx, rx) = watch::channel(None);
                        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                        let joiners = Arc::new(AtomicUsize::new(0));
                        *slot = Some(Flight {
                            id,
                            deadline,
                            joiners: joiners.clone(),
                            result: rx,
                        });
                        Err((id, joiners, tx))
                    }
                }
            };
            match joined {
                Ok(mut result) => match result.wait_for(Option::is_some).await {
                    Ok(done) => {
                        if let Some(collected) = done.as_ref() {
                            return collected.clone();
                        }
                    }
                    // The scrape driving it went away (its client hung up):
                    // look again, most likely to drive a fetch of our own.
                    Err(_) => continue,
                },
                Err((id, joiners, tx)) => {
                    let guard = FlightGuard {
                        slot: &self.in_flight,
                        id,
                    };
                    let snapshot = self.fetch_all(deadline).await;
                    // Close the slot before publishing: a scrape arriving from
                    // now on must not be handed this result.
                    drop(guard);
                    let sharers = 1 + joiners.load(Ordering::Relaxed);
                    let collected = Arc::new(Collected::new(snapshot, sharers));
                    let _ = tx.send(Some(collected.clone()));
                    return collected;
                }
            }
        }
    }

    /// Fresh reads of the three documents, concurrently; a failure is
    /// recorded in the snapshot (the observer counted and logged it),
    /// never propagated.
    async fn fetch_all(&self, deadline: Instant) -> Snapshot {
        let (status, health, metrics) = tokio::join!(
            self.observer.fresh_status(deadline),
            self.observer.fresh_health(deadline),
            self.observer.fresh_metrics(deadline),
        );
        let snapshot = Snapshot {
            status: outcome(status),
            health: outcome(health),
            metrics: SourceOutcome {
                result: metrics
                    .result
                    .map(|doc| doc.parsed.clone())
                    .map_err(|e| e.reason()),
                duration: metrics.duration,
            },
        };
        if snapshot.status.result.is_ok() {
            self.counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .derived = self.observer.derived();
        }
        snapshot
    }

    /// Renders a scrape with the counters as they stand now.
    #[cfg(test)]
    fn render(&self, collected: &Collected, format: Format) -> String {
        let (body, _) = self.render_bytes(collected, format, &(), Encoding::Identity);
        String::from_utf8(body.to_vec()).expect("the encoder writes UTF-8")
    }

    /// The answer to a scrape of `collected`, with `extra`'s families (the
    /// web and API layers') among the rest, in `encoding` when the body is
    /// large enough to gain from it (see [`compress()`]). Returns the coding
    /// actually used.
    ///
    /// The scrapes that joined one fetch send the same buffer, compressed
    /// once per coding between them: under 64 concurrent scrapes of a
    /// 10,000-connection pool that is one 4 MiB body (and one compression)
    /// instead of 64.
    pub fn render_bytes(
        &self,
        collected: &Collected,
        format: Format,
        extra: &dyn Families,
        encoding: Encoding,
    ) -> (Bytes, Encoding) {
        if collected.sharers == 1 {
            let (counters, fallback) = self.render_inputs();
            let body = self.encode(collected, &counters, fallback.as_deref(), format, extra);
            return compress(&body, encoding);
        }
        self.render_shared(collected, format, extra, encoding)
    }

    fn render_inputs(&self) -> (SourceCounters, Option<String>) {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fallback = self.observer.last_endpoint();
        (counters, fallback)
    }

    /// Every family of the answer, written once by one encoder into a
    /// buffer of the answers' pool the size of the last answer (so a
    /// steady pool's answer never grows or copies its buffer), finished
    /// once.
    fn encode(
        &self,
        snapshot: &Snapshot,
        counters: &SourceCounters,
        fallback: Option<&str>,
        format: Format,
        extra: &dyn Families,
    ) -> Bytes {
        let options = TranslateOptions {
            max_connections: self.max_connections,
            connections: self.connections,
            fallback_endpoint: fallback,
            build: &BuildInfo::CURRENT,
            max_label_value_len: self.limits.max_label_value_len,
        };
        let answers = buffer::answers();
        let last = self.last_answer_len.load(Ordering::Relaxed);
        let mut encoder = Encoder::with_buffer(format, answers.take(last));
        write_scrape(
            snapshot,
            counters,
            &options,
            &crate::scrape::process::families(),
            &mut encoder,
        );
        self.sources.encode(&mut encoder);
        extra.encode(&mut encoder);
        let body = encoder.finish().into_bytes();
        self.last_answer_len.store(body.len(), Ordering::Relaxed);
        answers.share(body)
    }

    fn render_shared(
        &self,
        collected: &Collected,
        format: Format,
        extra: &dyn Families,
        encoding: Encoding,
    ) -> (Bytes, Encoding) {
        let (counters, fallback) = self.render_inputs();
        let sources = self.sources.generation();
        let extra_version = extra.version();
        // Held while rendering and compressing, so that scrapes of one fetch
        // render and compress it once between them rather than each in turn.
        let mut rendered = collected.rendered.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut rendered[usize::from(format == Format::OpenMetrics)];
        let current = slot.as_ref().is_some_and(|done| {
            done.counters == counters
                && done.fallback == fallback
                && done.sources == sources
                && done.extra == extra_version
        });
        if !current {
            let body = self.encode(collected, &counters, fallback.as_deref(), format, extra);
            *slot = Some(Rendered {
                counters,
                fallback,
                sources,
                extra: extra_version,
                body,
                compressed: [None, None],
            });
        }
        let done = slot.as_mut().expect("filled above");
        let index = match encoding {
            Encoding::Identity => return (done.body.clone(), Encoding::Identity),
            Encoding::Gzip => 0,
            Encoding::Zstd => 1,
        };
        if let Some(body) = &done.compressed[index] {
            return (body.clone(), encoding);
        }
        let (body, used) = compress(&done.body, encoding);
        if used == encoding {
            done.compressed[index] = Some(body.clone());
        }
        (body, used)
    }

    /// Ready when the latest status fetch succeeded; a result older than
    /// [`READINESS_CACHE`] is refreshed first (joining any fetch in flight).
    pub async fn readiness(&self) -> Readiness {
        let (recent, _) = self
            .observer
            .recent(&[Document::Status], READINESS_CACHE, Duration::ZERO)
            .await;
        let slot = recent.status_slot();
        let reason = match slot.serve(Duration::ZERO, false) {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        Readiness {
            ready: reason.is_none(),
            pool_url: self.pool_url().to_owned(),
            reason,
            checked_seconds_ago: slot
                .attempted()
                .map_or(0.0, |at| at.elapsed().as_secs_f64()),
        }
    }
}

fn outcome<T>(o: Outcome<T>) -> SourceOutcome<Arc<T>> {
    SourceOutcome {
        result: o.result.map_err(|e| e.reason()),
        duration: o.duration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{self, FaultSpec, SimConfig, SimHandle, SimPool};

    struct Pool {
        handle: SimHandle,
        url: String,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    async fn start_pool() -> Pool {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let config = SimConfig {
            steady: true,
            connections: 20,
            ..SimConfig::default()
        };
        let handle = SimHandle::new(SimPool::new(config, sim::server::now_unix()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sim::serve(
            listener,
            handle.clone(),
            Duration::from_secs(1),
            async move {
                let _ = stopped.await;
            },
        ));
        Pool {
            handle,
            url,
            _stop: stop,
        }
    }

    impl Pool {
        /// Every pool document answers after `ms`.
        fn slow(&self, ms: u64) {
            let spec = FaultSpec {
                delay_ms: ms,
                ..FaultSpec::all_documents()
            };
            self.handle
                .with_pool(|p| p.set_fault(sim::Fault::Slow, Some(spec)));
        }

        fn requests(&self) -> [u64; 3] {
            self.handle.with_pool(|p| p.requests())
        }

        /// Until the pool has received `n` requests for each document.
        async fn received(&self, n: u64) {
            while self.requests() != [n; 3] {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Scrapes that joined the fetch in flight so far.
    fn joined(c: &Collector) -> usize {
        c.in_flight
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |f| f.joiners.load(Ordering::Relaxed))
    }

    /// Built the way the binary builds it, from flags.
    fn collector(pool: &Pool) -> Arc<Collector> {
        let argv = crate::cli::normalize_args(["--pool.url".to_owned(), pool.url.clone()]);
        let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let args = <crate::cli::Args as argh::FromArgs>::from_args(&["exporter"], &strs).unwrap();
        let config = crate::cli::Config::from_args(args, |_| None).unwrap();
        let client = PoolClient::new(&config.pool).unwrap();
        Arc::new(Collector::new(
            client,
            PoolSettings::new(1000, Duration::from_secs(5)),
            Redactor::default(),
        ))
    }

    fn requests_counted(c: &Collector) -> [u64; 3] {
        c.sources.requests()
    }

    fn spawn_collect(
        c: &Arc<Collector>,
        budget: Duration,
    ) -> tokio::task::JoinHandle<Arc<Collected>> {
        let c = c.clone();
        tokio::spawn(async move { c.collect(Instant::now() + budget).await })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_scrapes_share_one_fetch_and_one_rendering() {
        let pool = start_pool().await;
        // Out long enough for every joiner to arrive, even on a busy machine.
        pool.slow(2000);
        let c = collector(&pool);
        let first = spawn_collect(&c, Duration::from_secs(5));
        pool.received(1).await;
        let joiners: Vec<_> = (0..15)
            .map(|_| spawn_collect(&c, Duration::from_secs(5)))
            .collect();
        let first = first.await.unwrap();
        assert!(first.status.result.is_ok());
        for j in joiners {
            assert!(Arc::ptr_eq(&j.await.unwrap(), &first));
        }
        assert_eq!(pool.requests(), [1, 1, 1]);
        assert_eq!(requests_counted(&c), [1, 1, 1]);
        assert_eq!(first.sharers, 16);

        let text = c.render(&first, Format::PrometheusText);
        let (shared, _) = c.render_bytes(&first, Format::PrometheusText, &(), Encoding::Identity);
        assert_eq!(text.as_bytes(), &shared[..]);
        let (again, _) = c.render_bytes(&first, Format::PrometheusText, &(), Encoding::Identity);
        assert_eq!(
            shared.as_ptr(),
            again.as_ptr(),
            "one buffer for all joiners"
        );
        struct Extra(std::sync::atomic::AtomicU64);
        impl Families for Extra {
            fn encode(&self, encoder: &mut Encoder) {
                let value = self.0.load(Ordering::Relaxed) as f64;
                encoder.family(
                    &crate::exposition::MetricFamily::new(
                        "x_total",
                        "h",
                        crate::exposition::MetricType::Counter,
                    )
                    .with_sample(vec![], value),
                );
            }
            fn version(&self) -> u64 {
                self.0.load(Ordering::Relaxed)
            }
        }
        let extra = Extra(1.into());
        let (om, _) = c.render_bytes(&first, Format::OpenMetrics, &extra, Encoding::Identity);
        assert!(om.ends_with(b"# HELP x h\n# TYPE x counter\nx_total 1\n# EOF\n"));
        assert_eq!(om.windows(6).filter(|w| w == b"# EOF\n").count(), 1);
        let (again, _) = c.render_bytes(&first, Format::OpenMetrics, &extra, Encoding::Identity);
        assert_eq!(om.as_ptr(), again.as_ptr(), "extra families unchanged");
        extra.0.store(2, Ordering::Relaxed);
        let (changed, _) = c.render_bytes(&first, Format::OpenMetrics, &extra, Encoding::Identity);
        assert!(changed.ends_with(b"x_total 2\n# EOF\n"), "re-rendered");
        assert!(
            text.contains("secure_channel_exporter_source_requests_total{source=\"status\"} 1\n")
        );
        assert!(c.render(&first, Format::OpenMetrics).ends_with("# EOF\n"));

        // Compressed once per coding between the joiners, and the same text.
        let (gz, used) = c.render_bytes(&first, Format::PrometheusText, &(), Encoding::Gzip);
        assert_eq!(used, Encoding::Gzip);
        let (gz_again, _) = c.render_bytes(&first, Format::PrometheusText, &(), Encoding::Gzip);
        assert_eq!(
            gz.as_ptr(),
            gz_again.as_ptr(),
            "one compression for all joiners"
        );
        let mut unzipped = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, text);
        let (zs, used) = c.render_bytes(&first, Format::PrometheusText, &(), Encoding::Zstd);
        assert_eq!(used, Encoding::Zstd);
        assert_eq!(zstd::stream::decode_all(&zs[..]).unwrap(), text.as_bytes());
        assert!(zs.len() * 4 < text.len() && gz.len() * 4 < text.len());

        // Arriving after it completed: a fetch of its own, never the old one.
        pool.slow(0);
        let later = c.collect(Instant::now() + Duration::from_secs(5)).await;
        assert!(!Arc::ptr_eq(&later, &first));
        assert_eq!(pool.requests(), [2, 2, 2]);
        assert_eq!(later.sharers, 1);
        // The counters moved, so the earlier scrape's rendering is redone.
        assert!(c
            .render(&first, Format::PrometheusText)
            .contains("secure_channel_exporter_source_requests_total{source=\"status\"} 2\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shorter_deadline_does_not_wait_for_a_longer_fetch() {
        let pool = start_pool().await;
        pool.slow(3000);
        let c = collector(&pool);
        let long = spawn_collect(&c, Duration::from_secs(10));
        pool.received(1).await;
        // The short scrape ends at its deadline while the long fetch is
        // still out (the pool holds it 3 s).
        let short = c
            .collect(Instant::now() + Duration::from_millis(1000))
            .await;
        assert!(
            !long.is_finished(),
            "the short scrape waited for the long fetch"
        );
        assert_eq!(
            short.status.result.as_ref().err(),
            Some(&crate::pool::FailureReason::Timeout)
        );
        // Its own fetch reached the pool; fetches are counted as they end.
        assert_eq!(pool.requests(), [2, 2, 2]);
        assert_eq!(requests_counted(&c), [1, 1, 1]);
        let long = long.await.unwrap();
        assert!(long.status.result.is_ok());
        assert_eq!(requests_counted(&c), [2, 2, 2]);
        assert!(!Arc::ptr_eq(&long, &short));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_joiner_survives_the_cancelled_scrape_it_joined() {
        let pool = start_pool().await;
        pool.slow(2000);
        let c = collector(&pool);
        let leader = spawn_collect(&c, Duration::from_secs(5));
        pool.received(1).await;
        let joiner = spawn_collect(&c, Duration::from_secs(5));
        while joined(&c) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Prometheus gave up on the first scrape; the pool fetches run on
        // tasks of their own, so the joiner still gets them.
        leader.abort();
        let collected = joiner.await.unwrap();
        assert!(collected.status.result.is_ok());
        assert_eq!(pool.requests(), [1, 1, 1]);
        assert!(c.in_flight.lock().unwrap().is_none());
    }
}
