//! HTTP basic auth against bcrypt hashes.
//!
//! bcrypt is slow on purpose, which makes it a CPU amplifier: 32 clients
//! sending wrong passwords kept both cores busy at cost 12 (issue 11). So,
//! as exporter-toolkit does, one bcrypt runs at a time; verified
//! credentials are remembered (a scrape every few seconds does not pay
//! bcrypt each time) and so, briefly, are failed ones (a client retrying
//! the same wrong password pays it once). Both caches hold a SHA-256 digest
//! of user, hash and password, never the password. An unknown user costs a
//! bcrypt of the same cost as the known users', so timing does not reveal
//! which names exist.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// Most distinct verified credentials kept; the cache is cleared past it.
const CACHE_LIMIT: usize = 1024;

/// How long a failed credential is refused without a new bcrypt.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(60);

/// Fallback for unknown users when no user is configured (cost 10).
const DUMMY_HASH: &str = "$2b$10$abcdefghijklmnopqrstuu4T826PRnz0Hu6YlprUuxkZxOOj5Fw5S";

/// What a check needs next.
pub enum Verdict {
    /// Known from a cache (or without credentials): no bcrypt needed.
    Decided(bool),
    /// A bcrypt is needed; run [`BasicAuth::verify`] with it (serialised,
    /// off the async workers).
    Bcrypt(Pending),
}

pub struct Pending {
    password: String,
    /// The user's hash, or a hash of the same cost for an unknown user.
    hash: String,
    known: bool,
    key: [u8; 32],
}

#[derive(Default)]
pub struct BasicAuth {
    /// Digests of credentials that verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Digests of credentials that failed, with when.
    failed: Mutex<HashMap<[u8; 32], Instant>>,
    /// Held while bcrypt runs: one at a time, whatever the clients do.
    bcrypt: Mutex<()>,
}

impl BasicAuth {
    /// Looks `header` up in the caches; says whether a bcrypt is needed.
    /// `dummy` is a hash of the users' cost for unknown users.
    pub fn precheck(
        &self,
        users: &BTreeMap<String, String>,
        dummy: Option<&str>,
        header: Option<&[u8]>,
    ) -> Verdict {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return Verdict::Decided(false);
        };
        let (hash, known) = match users.get(&user) {
            Some(hash) => (hash.as_str(), true),
            None => (dummy.unwrap_or(DUMMY_HASH), false),
        };
        let key = cache_key(&user, hash, &password);
        if known && lock(&self.verified).contains(&key) {
            return Verdict::Decided(true);
        }
        {
            let mut failed = lock(&self.failed);
            if let Some(at) = failed.get(&key) {
                if at.elapsed() < FAILURE_MEMORY {
                    return Verdict::Decided(false);
                }
                failed.remove(&key);
            }
        }
        Verdict::Bcrypt(Pending {
            password,
            hash: hash.to_owned(),
            known,
            key,
        })
    }

    /// Runs the bcrypt a [`Verdict::Bcrypt`] asked for, one at a time
    /// across all requests, and remembers the outcome. Blocking.
    pub fn verify(&self, pending: Pending) -> bool {
        let ok = {
            let _one_at_a_time = lock(&self.bcrypt);
            // bcrypt::verify compares in constant time.
            bcrypt::verify(&pending.password, &pending.hash).unwrap_or(false) && pending.known
        };
        if ok {
            let mut cache = lock(&self.verified);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(pending.key);
        } else {
            let mut failed = lock(&self.failed);
            if failed.len() >= CACHE_LIMIT {
                failed.retain(|_, at| at.elapsed() < FAILURE_MEMORY);
                if failed.len() >= CACHE_LIMIT {
                    failed.clear();
                }
            }
            failed.insert(pending.key, Instant::now());
        }
        ok
    }

    /// [`precheck`](Self::precheck) then, if needed, [`verify`](Self::verify).
    /// Blocking.
    pub fn check(
        &self,
        users: &BTreeMap<String, String>,
        dummy: Option<&str>,
        header: Option<&[u8]>,
    ) -> bool {
        match self.precheck(users, dummy, header) {
            Verdict::Decided(ok) => ok,
            Verdict::Bcrypt(pending) => self.verify(pending),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A bcrypt hash of a random password at the highest cost among `users`,
/// spent on unknown user names so that they take as long as known ones.
pub fn dummy_hash(users: &BTreeMap<String, String>) -> Option<String> {
    let cost = users
        .values()
        .filter_map(|h| h.split('$').nth(2)?.parse::<u32>().ok())
        .max()?;
    let mut secret = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).ok()?;
    bcrypt::hash(
        base64::engine::general_purpose::STANDARD.encode(secret),
        cost,
    )
    .ok()
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
        let check = |h: Option<&[u8]>| auth.check(&users, None, h);
        assert!(check(Some(&header("prom", "correct horse"))));
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        assert!(check(Some(&header("prom", "correct horse"))));
        assert!(!check(Some(&header("prom", "wrong"))));
        assert!(!check(Some(&header("nobody", "correct horse"))));
        assert!(!check(Some(b"Bearer abc")));
        assert!(!check(Some(b"Basic !!!")));
        assert!(!check(None));
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
    }

    #[test]
    fn failures_are_remembered_without_a_new_bcrypt() {
        let users = BTreeMap::from([("prom".to_owned(), HASH.to_owned())]);
        let auth = BasicAuth::default();
        let wrong = header("prom", "wrong");
        assert!(matches!(
            auth.precheck(&users, None, Some(&wrong)),
            Verdict::Bcrypt(_)
        ));
        assert!(!auth.check(&users, None, Some(&wrong)));
        assert!(matches!(
            auth.precheck(&users, None, Some(&wrong)),
            Verdict::Decided(false)
        ));
        assert_eq!(auth.failed.lock().unwrap().len(), 1);
        // The right password is still checked.
        assert!(auth.check(&users, None, Some(&header("prom", "correct horse"))));
    }

    #[test]
    fn unknown_users_pay_the_known_users_cost() {
        let users = BTreeMap::from([("prom".to_owned(), HASH.to_owned())]);
        let dummy = dummy_hash(&users).unwrap();
        assert!(dummy.starts_with("$2b$04$"), "{dummy}");
        let auth = BasicAuth::default();
        let Verdict::Bcrypt(pending) = auth.precheck(&users, Some(&dummy), Some(&header("x", "y")))
        else {
            panic!("an unknown user must cost a bcrypt");
        };
        assert_eq!(pending.hash, dummy);
        assert!(!auth.verify(pending));
    }

    #[test]
    fn dummy_hash_is_a_valid_bcrypt_hash() {
        assert_eq!(bcrypt::verify("x", DUMMY_HASH).ok(), Some(true));
    }
}
