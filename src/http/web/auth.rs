//! HTTP basic auth against bcrypt hashes, with verified results cached so a
//! scrape every few seconds does not pay bcrypt's deliberate cost each time.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine;

/// Most distinct verified credentials kept; the cache is cleared past it.
const CACHE_LIMIT: usize = 1024;

/// Spent on unknown users so that response time does not reveal which
/// user names exist (bcrypt of "x", cost 10).
const DUMMY_HASH: &str = "$2b$10$abcdefghijklmnopqrstuu4T826PRnz0Hu6YlprUuxkZxOOj5Fw5S";

#[derive(Default)]
pub struct BasicAuth {
    /// SHA-256 of (user, hash, password) for credentials that verified. A
    /// digest, never the password, is what stays in memory.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl BasicAuth {
    /// Checks an `Authorization` header value against `users`. Blocking
    /// (bcrypt): call from a blocking-capable context.
    pub fn check(&self, users: &BTreeMap<String, String>, header: Option<&[u8]>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = users.get(&user) else {
            let _ = bcrypt::verify(&password, DUMMY_HASH);
            return false;
        };
        let key = cache_key(&user, hash, &password);
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return true;
        }
        // bcrypt::verify compares in constant time.
        if !bcrypt::verify(&password, hash).unwrap_or(false) {
            return false;
        }
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key);
        true
    }
}

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";

    fn header(user: &str, pass: &str) -> Vec<u8> {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {enc}").into_bytes()
    }

    #[test]
    fn verifies_and_caches() {
        let users = BTreeMap::from([("prom".to_owned(), HASH.to_owned())]);
        let auth = BasicAuth::default();
        assert!(auth.check(&users, Some(&header("prom", "correct horse"))));
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        assert!(auth.check(&users, Some(&header("prom", "correct horse"))));
        assert!(!auth.check(&users, Some(&header("prom", "wrong"))));
        assert!(!auth.check(&users, Some(&header("nobody", "correct horse"))));
        assert!(!auth.check(&users, Some(b"Bearer abc")));
        assert!(!auth.check(&users, Some(b"Basic !!!")));
        assert!(!auth.check(&users, None));
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
    }

    #[test]
    fn dummy_hash_is_a_valid_bcrypt_hash() {
        assert_eq!(bcrypt::verify("x", DUMMY_HASH).ok(), Some(true));
    }
}
