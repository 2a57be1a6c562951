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

use std::io::Write;

use bytes::Bytes;

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

    /// `body` in this coding. Encoders writing to memory do not fail but
    /// for a lack of memory; should one fail anyway, the caller sends the
    /// body uncompressed rather than no answer.
    pub fn compress(self, body: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Encoding::Identity => Ok(Bytes::copy_from_slice(body)),
            Encoding::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 8),
                    flate2::Compression::new(GZIP_LEVEL),
                );
                enc.write_all(body)?;
                enc.finish().map(Bytes::from)
            }
            Encoding::Zstd => zstd::bulk::compress(body, ZSTD_LEVEL).map(Bytes::from),
        }
    }
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
    }
}
