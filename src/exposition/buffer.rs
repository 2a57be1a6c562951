//! Answer buffers reused across scrapes.
//!
//! A 10,000-connection answer is 4.3 MB. Allocated afresh for every scrape,
//! its pages were mapped, faulted in, zeroed and unmapped each time: in a
//! profile of back-to-back scrapes, page faults, page clearing and
//! unmapping were a fifth of the exporter's CPU (docs/performance.md). The
//! rendered answer and its compressed forms are therefore written into
//! buffers taken from a small pool, and handed to the HTTP layer as
//! [`Bytes`] that give their buffer back when the last scraper sharing it
//! has been sent it. Buffers are sized by the scrapes that used them, so
//! after the first scrape of a pool no answer grows or copies its buffer.
//!
//! Idle memory stays low: a buffer nobody took for [`IDLE_RELEASE`] is
//! freed, and the allocator is asked to return the freed pages to the
//! system.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Free buffers kept at most: an answer and its compressed form. More
/// raised the peak under 64 concurrent scrapers (each kept buffer can be
/// a whole answer) without saving page faults in sequential scraping.
const KEEP: usize = 2;
/// Smaller buffers are left to the allocator, which serves them from its
/// free lists without touching fresh pages.
const MIN_POOLED: usize = 64 * 1024;
/// A free buffer unused this long is released. Long enough that scrapes
/// in quick succession (several Prometheus replicas, a short interval)
/// reuse it, short enough that an exporter scraped once a minute does not
/// hold the largest answer it ever made between scrapes.
pub const IDLE_RELEASE: Duration = Duration::from_secs(10);

struct Free {
    buf: Vec<u8>,
    since: Instant,
}

/// A small pool of byte buffers; see the module doc.
pub struct BufferPool {
    free: Mutex<Vec<Free>>,
    /// Whether a release of idle buffers is already scheduled.
    timer: AtomicBool,
}

static ANSWERS: BufferPool = BufferPool::new();

/// The pool of the scrape answers.
pub fn answers() -> &'static BufferPool {
    &ANSWERS
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BufferPool {
    pub const fn new() -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            timer: AtomicBool::new(false),
        }
    }

    /// An empty buffer with room for at least `hint` bytes: the smallest
    /// free one that has it, else the largest free one (grown), else a new
    /// one.
    pub fn take(&self, hint: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let fits = free
            .iter()
            .enumerate()
            .filter(|(_, f)| f.buf.capacity() >= hint)
            .min_by_key(|(_, f)| f.buf.capacity())
            .map(|(i, _)| i);
        let pick = fits.or_else(|| {
            free.iter()
                .enumerate()
                .max_by_key(|(_, f)| f.buf.capacity())
                .map(|(i, _)| i)
        });
        let mut buf = pick.map_or_else(Vec::new, |i| free.swap_remove(i).buf);
        drop(free);
        buf.clear();
        buf.reserve(hint);
        buf
    }

    /// `buf` as shareable [`Bytes`] that return it to this pool when the
    /// last clone is dropped.
    pub fn share(&'static self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lease { buf, pool: self })
    }

    /// Keeps `buf` for a later [`take`](Self::take) (it need not come from
    /// this pool).
    pub fn give_back(&'static self, buf: Vec<u8>) {
        if buf.capacity() < MIN_POOLED {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(Free {
            buf,
            since: Instant::now(),
        });
        if free.len() > KEEP {
            if let Some(smallest) = free
                .iter()
                .enumerate()
                .min_by_key(|(_, f)| f.buf.capacity())
                .map(|(i, _)| i)
            {
                free.swap_remove(smallest);
            }
        }
        drop(free);
        self.schedule_release();
    }

    /// Bytes held by free buffers.
    pub fn idle_bytes(&self) -> usize {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.iter().map(|f| f.buf.capacity()).sum()
    }

    /// Frees the buffers unused since `now - IDLE_RELEASE`; returns how
    /// many are left.
    pub fn release_idle(&self, now: Instant) -> usize {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let before = free.len();
        free.retain(|f| now.saturating_duration_since(f.since) < IDLE_RELEASE);
        let (released, left) = (before - free.len(), free.len());
        drop(free);
        if released > 0 {
            return_pages_to_the_system();
        }
        left
    }

    /// Releases idle buffers on a timer while any are kept. Outside a
    /// Tokio runtime (benchmarks, unit tests) there is no timer: buffers
    /// then live until the process ends, at most [`KEEP`] of them.
    fn schedule_release(&'static self) {
        if self.timer.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.timer.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(IDLE_RELEASE).await;
                if self.release_idle(Instant::now()) == 0 {
                    self.timer.store(false, Ordering::Release);
                    // A buffer given back between the release and the
                    // store above found the timer still set: look again.
                    let kept = !self
                        .free
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_empty();
                    if !kept || self.timer.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        });
    }
}

struct Lease {
    buf: Vec<u8>,
    pool: &'static BufferPool,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// glibc keeps freed memory in its arenas; a multi-megabyte answer freed
/// there would stay resident until the next scrape reused it. Other
/// allocators return such sizes to the system on their own.
fn return_pages_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory the allocator holds;
    // it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> &'static BufferPool {
        Box::leak(Box::new(BufferPool::new()))
    }

    #[test]
    fn a_shared_buffer_comes_back_when_the_last_clone_is_dropped() {
        let pool = pool();
        let mut buf = pool.take(100_000);
        buf.extend_from_slice(b"answer");
        let at = buf.as_ptr();
        let shared = pool.share(buf);
        let other = shared.clone();
        assert_eq!(&other[..], b"answer");
        drop(shared);
        assert_eq!(pool.idle_bytes(), 0, "still in use by one clone");
        drop(other);
        assert!(pool.idle_bytes() >= 100_000);
        let again = pool.take(50_000);
        assert_eq!(again.as_ptr(), at, "the same memory, not a new buffer");
        assert!(again.is_empty());
    }

    #[test]
    fn the_best_fit_is_taken_and_at_most_keep_are_kept() {
        let pool = pool();
        for size in [1 << 17, 1 << 22, 1 << 18, 1 << 20] {
            pool.give_back(Vec::with_capacity(size));
        }
        // The smallest were dropped to keep two.
        assert_eq!(pool.idle_bytes(), (1 << 20) + (1 << 22));
        assert_eq!(pool.take(600_000).capacity(), 1 << 20);
        pool.give_back(Vec::with_capacity(1 << 19));
        assert_eq!(
            pool.take(10 << 20).capacity(),
            10 << 20,
            "the largest, grown"
        );
        // Tiny buffers are not pooled.
        pool.give_back(Vec::with_capacity(100));
        assert_eq!(pool.idle_bytes(), 1 << 19);
    }

    #[test]
    fn idle_buffers_are_released() {
        let pool = pool();
        pool.give_back(Vec::with_capacity(1 << 20));
        assert_eq!(pool.release_idle(Instant::now()), 1, "not idle yet");
        assert_eq!(pool.release_idle(Instant::now() + IDLE_RELEASE), 0);
        assert_eq!(pool.idle_bytes(), 0);
    }
}
