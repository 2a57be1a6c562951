//! Content codings of a scrape's answer: gzip and zstd, negotiated from
//! `Accept-Encoding`.
//!
//! Prometheus always sends `Accept-Encoding: gzip`. At 10,000 connections
//! the text answer is about 4 MB; compressed it is 25–60× smaller, which
//! is most of the scrape time for a Prometheus on another host. Levels and
//! the size threshold were chosen by measurement (docs/performance.md,
//! "Compression"): gzip 2 and zstd 1 keep nearly all of the size gain of
//! the higher levels at a fraction of their CPU time, and answers
//! under [`MIN_COMPRESS_BYTES`] are sent as they are, because there the
//! coding's own headers and the CPU time buy nothing measurable.

use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use super::buffer;

/// Answers smaller than this are sent uncompressed (see the module doc).
pub const MIN_COMPRESS_BYTES: usize = 1024;

/// gzip level 2: with the zlib-rs backend, level 1 is a quicker strategy
/// that leaves the 10,000-connection answer 46 % larger (222 KB against
/// 152 KB) for no measurable saving in time (3.8 ms against 4.0 ms); level
/// 6 is 2.6× slower for 5 % less (docs/performance.md).
const GZIP_LEVEL: u32 = 2;
/// zstd level: 1 is its fastest standard level and already smaller than
/// gzip at any level on our exposition.
const ZSTD_LEVEL: i32 = 1;
/// The least input worth a deflate of its own on another core: below it
/// the thread and the priming of its dictionary cost more than they save.
const MIN_PIECE: usize = 256 * 1024;
/// Deflate's window: what a piece needs of the text before it to find
/// every match a single stream would.
const WINDOW: usize = 32 * 1024;
/// A gzip member header: deflate, no name or time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A content coding of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    /// Every coding, in the order of the self-metric's label values.
    pub const ALL: [Encoding; 3] = [Encoding::Identity, Encoding::Gzip, Encoding::Zstd];

    /// The token of `Content-Encoding` and of the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
        }
    }

    /// `body` in this coding, in a buffer from the answers' pool.
    /// Encoders writing to memory do not fail but for a lack of memory;
    /// should one fail anyway, [`compress`] sends the body uncompressed
    /// rather than no answer.
    pub fn compress(self, body: &[u8]) -> std::io::Result<Bytes> {
        let pool = buffer::answers();
        // Our text compresses 25–60×: a sixteenth is room to spare.
        let mut out = pool.take(body.len() / 16);
        match self {
            Encoding::Identity => out.extend_from_slice(body),
            Encoding::Gzip => gzip(body, &mut out)?,
            Encoding::Zstd => zstd_into(body, &mut out)?,
        }
        Ok(pool.share(out))
    }
}

/// `body` in `encoding`, or as it is when it is too small to gain from it
/// (or, in theory, the encoder failed). Returns the coding used.
pub fn compress(body: &Bytes, encoding: Encoding) -> (Bytes, Encoding) {
    if encoding == Encoding::Identity || body.len() < MIN_COMPRESS_BYTES {
        return (body.clone(), Encoding::Identity);
    }
    match encoding.compress(body) {
        Ok(small) => (small, encoding),
        Err(e) => {
            tracing::warn!(encoding = encoding.as_str(), error = %e, "compression failed; answering uncompressed");
            (body.clone(), Encoding::Identity)
        }
    }
}

/// gzip of `body`, appended to `out`: one deflate stream made in pieces
/// on as many cores as the machine has (pigz's way). Each piece after the
/// first starts from the 32 KiB before it as its dictionary, so it finds
/// the matches one stream would, and all but the last end on a byte
/// boundary (an empty stored block), so the pieces simply follow one
/// another. The answer is a few bytes per piece longer than a single
/// stream's and takes about 1/n of its time.
fn gzip(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    let pieces = (body.len() / MIN_PIECE).clamp(1, cores());
    gzip_in(body, pieces, GZIP_LEVEL, out)
}

/// [`gzip`] in `pieces` pieces at `level`.
fn gzip_in(body: &[u8], pieces: usize, level: u32, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.extend_from_slice(&GZIP_HEADER);
    let size = body.len().div_ceil(pieces).max(1);
    // An empty body is one empty piece.
    let starts: Vec<usize> = (0..body.len().max(1)).step_by(size).collect();
    let last = starts.len().saturating_sub(1);
    let piece = |i: usize| {
        let start = starts[i];
        let end = (start + size).min(body.len());
        (
            &body[start..end],
            &body[start.saturating_sub(WINDOW)..start],
        )
    };
    let crc = std::thread::scope(|scope| -> std::io::Result<Crc> {
        let helpers: Vec<_> = (1..starts.len())
            .map(|i| {
                scope.spawn(move || {
                    let (input, dictionary) = piece(i);
                    let mut out = buffer::answers().take(input.len() / 16);
                    let crc = deflate_piece(input, dictionary, i == last, level, &mut out)?;
                    Ok::<_, std::io::Error>((out, crc))
                })
            })
            .collect();
        let (input, _) = piece(0);
        let mut crc = deflate_piece(input, &[], last == 0, level, out)?;
        for helper in helpers {
            let (part, part_crc) = helper
                .join()
                .map_err(|_| std::io::Error::other("a deflate thread panicked"))??;
            out.extend_from_slice(&part);
            buffer::answers().give_back(part);
            crc.combine(&part_crc);
        }
        Ok(crc)
    })?;
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    Ok(())
}

/// Raw deflate of one piece into `out`, primed with `dictionary`, ending
/// the stream when `last` and on a byte boundary otherwise; returns the
/// piece's CRC-32.
fn deflate_piece(
    mut input: &[u8],
    dictionary: &[u8],
    last: bool,
    level: u32,
    out: &mut Vec<u8>,
) -> std::io::Result<Crc> {
    let mut crc = Crc::new();
    crc.update(input);
    // Only the states of the level in use are kept.
    let keep = level == GZIP_LEVEL;
    let taken = keep
        .then(|| deflaters().lock().unwrap_or_else(|e| e.into_inner()).pop())
        .flatten();
    let mut deflate = taken.unwrap_or_else(|| Compress::new(Compression::new(level), false));
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut done = Ok(());
    if !dictionary.is_empty() {
        done = deflate
            .set_dictionary(dictionary)
            .map(drop)
            .map_err(std::io::Error::other);
    }
    while done.is_ok() {
        if out.capacity() - out.len() < 4096 {
            out.reserve((input.len() / 16).max(64 * 1024));
        }
        let before = deflate.total_in();
        match deflate.compress_vec(input, out, flush) {
            Ok(status) => {
                input = &input[(deflate.total_in() - before) as usize..];
                // A flush is complete once the input is consumed with
                // room left over in the output (zlib's rule).
                let flushed = !last && input.is_empty() && out.len() < out.capacity();
                if status == Status::StreamEnd || flushed {
                    break;
                }
            }
            Err(e) => done = Err(std::io::Error::other(e)),
        }
    }
    deflate.reset();
    let mut kept = deflaters().lock().unwrap_or_else(|e| e.into_inner());
    if keep && kept.len() < cores() {
        kept.push(deflate);
    }
    done.map(|()| crc)
}

/// Deflate states (a few hundred KiB each) kept for the next scrape
/// rather than allocated and zeroed again: one per core.
fn deflaters() -> &'static Mutex<Vec<Compress>> {
    static KEPT: Mutex<Vec<Compress>> = Mutex::new(Vec::new());
    &KEPT
}

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// zstd of `body` into the empty `out`, with this thread's compression
/// context (kept between scrapes, like the deflate states).
fn zstd_into(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with(|context| {
        let mut context = context.borrow_mut();
        let compressor = match context.as_mut() {
            Some(c) => c,
            None => context.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        if compressor.compress_to_buffer(body, out).is_ok() {
            return Ok(());
        }
        // Too little room for once (the text compressed less than 16×):
        // again with the most zstd can need.
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(body.len()));
        compressor.compress_to_buffer(body, out).map(|_| ())
    })
}

/// The coding to answer with, from the request's `Accept-Encoding` header
/// (RFC 9110 §12.5.3): the supported coding with the highest q-value above
/// 0 (zstd on a tie: smaller and faster), unless `identity` is given a
/// higher q-value (by name or through `*`). `*` stands for every coding the header does not name; `x-gzip`
/// is gzip. Without the header, or with nothing acceptable, the answer is
/// uncompressed: an exporter should still answer rather than send 406.
pub fn negotiate_encoding(header: Option<&str>) -> Encoding {
    let Some(header) = header else {
        return Encoding::Identity;
    };
    let (mut gzip, mut zstd, mut identity, mut star) = (None, None, None, None);
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue;
        }
        let mut q = 1.0_f32;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    // An unreadable q-value makes the entry unacceptable.
                    q = v
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0);
                }
            }
        }
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding.eq_ignore_ascii_case("zstd") {
            &mut zstd
        } else if coding.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if coding == "*" {
            &mut star
        } else {
            continue;
        };
        // A coding named twice counts with its best q-value.
        *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
    }
    let gzip = gzip.or(star).unwrap_or(0.0);
    let zstd = zstd.or(star).unwrap_or(0.0);
    // identity weighs what the header gives it, by name or through `*`;
    // not named at all, it is only the fallback: any coding the client
    // lists wins over it.
    let identity = identity.or(star).unwrap_or(0.0);
    let (best, q) = if zstd >= gzip {
        (Encoding::Zstd, zstd)
    } else {
        (Encoding::Gzip, gzip)
    };
    if q > 0.0 && q >= identity {
        best
    } else {
        Encoding::Identity
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn what_prometheus_and_common_clients_send() {
        // Prometheus 2.x and 3.x.
        assert_eq!(negotiate_encoding(Some("gzip")), Encoding::Gzip);
        // curl --compressed, browsers.
        assert_eq!(
            negotiate_encoding(Some("deflate, gzip, br, zstd")),
            Encoding::Zstd
        );
        assert_eq!(
            negotiate_encoding(Some("gzip, deflate, br")),
            Encoding::Gzip
        );
        assert_eq!(negotiate_encoding(None), Encoding::Identity);
        assert_eq!(negotiate_encoding(Some("")), Encoding::Identity);
        assert_eq!(negotiate_encoding(Some("br, deflate")), Encoding::Identity);
    }

    #[test]
    fn q_values_identity_and_star() {
        assert_eq!(negotiate_encoding(Some("zstd;q=0.5, gzip")), Encoding::Gzip);
        assert_eq!(
            negotiate_encoding(Some("gzip;q=0.2, zstd;q=0.9")),
            Encoding::Zstd
        );
        assert_eq!(negotiate_encoding(Some("gzip;q=0")), Encoding::Identity);
        assert_eq!(
            negotiate_encoding(Some("gzip;q=0.5, identity")),
            Encoding::Identity
        );
        assert_eq!(
            negotiate_encoding(Some("gzip;q=0.5, identity;q=0.1")),
            Encoding::Gzip
        );
        assert_eq!(negotiate_encoding(Some("*")), Encoding::Zstd);
        assert_eq!(
            negotiate_encoding(Some("*;q=0.3, zstd;q=0")),
            Encoding::Gzip
        );
        assert_eq!(
            negotiate_encoding(Some("identity, *;q=0")),
            Encoding::Identity
        );
        assert_eq!(negotiate_encoding(Some("GZIP ; Q=1.0")), Encoding::Gzip);
        assert_eq!(negotiate_encoding(Some("x-gzip")), Encoding::Gzip);
        // Unreadable or out-of-range q-values do not accept the coding.
        assert_eq!(negotiate_encoding(Some("gzip;q=high")), Encoding::Identity);
        assert_eq!(negotiate_encoding(Some("gzip;q=2")), Encoding::Identity);
        assert_eq!(negotiate_encoding(Some(",,;q=1,gzip")), Encoding::Gzip);
    }

    #[test]
    fn compressed_bodies_decode_to_the_original() {
        let body: String = (0..5000)
            .map(|i| format!("secure_channel_connection_errors_total{{endpoint=\"e\",connection_id=\"{i}\"}} 0\n"))
            .collect();
        let gz = Encoding::Gzip.compress(body.as_bytes()).unwrap();
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let zs = Encoding::Zstd.compress(body.as_bytes()).unwrap();
        assert_eq!(
            zstd::bulk::decompress(&zs, body.len()).unwrap(),
            body.as_bytes()
        );
        assert!(gz.len() * 10 < body.len(), "gzip {}", gz.len());
        assert!(zs.len() * 10 < body.len(), "zstd {}", zs.len());
        let empty = Encoding::Gzip.compress(b"").unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    /// A body of several pieces: one gzip member whose pieces decode to
    /// the text, about the size one stream makes of it.
    #[test]
    fn gzip_in_pieces_is_one_valid_member_no_larger_than_one_stream() {
        let body: String = (0..60_000)
            .map(|i| format!("secure_channel_connection_errors_total{{endpoint=\"relay.example.net:443\",connection_id=\"{i}\"}} {}\n", i % 7))
            .collect();
        assert!(body.len() > 4 * MIN_PIECE);
        // Four pieces whatever the machine's cores, as on a large server.
        let mut pieces = Vec::new();
        gzip_in(body.as_bytes(), 4, GZIP_LEVEL, &mut pieces).unwrap();
        let mut back = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(&pieces[..]);
        decoder.read_to_end(&mut back).unwrap();
        assert_eq!(back, body.as_bytes());
        // Nothing after the member (a second member would be misread by
        // some clients).
        assert_eq!(decoder.into_inner().len(), 0);
        let mut one = Vec::new();
        gzip_in(body.as_bytes(), 1, GZIP_LEVEL, &mut one).unwrap();
        let mut stream = flate2::write::GzEncoder::new(Vec::new(), Compression::new(GZIP_LEVEL));
        std::io::Write::write_all(&mut stream, body.as_bytes()).unwrap();
        let stream = stream.finish().unwrap();
        assert_eq!(one.len(), stream.len(), "one piece is the plain stream");
        // Each later piece costs an empty stored block (5 bytes) and finds
        // the matches across its start through the dictionary.
        assert!(
            pieces.len() <= stream.len() + 3 * 128,
            "{} against {}",
            pieces.len(),
            stream.len()
        );
    }

    #[test]
    fn small_answers_are_not_compressed() {
        let small = Bytes::from_static(b"secure_channel_up 1\n");
        assert_eq!(
            compress(&small, Encoding::Gzip),
            (small, Encoding::Identity)
        );
        let big = Bytes::from(vec![b'a'; MIN_COMPRESS_BYTES]);
        let (body, used) = compress(&big, Encoding::Zstd);
        assert_eq!(used, Encoding::Zstd);
        assert!(body.len() < 100);
        assert_eq!(
            compress(&big, Encoding::Identity),
            (big, Encoding::Identity)
        );
    }
}
