//! Keeps the web config current: each new connection checks whether the
//! config file or a file it names changed (and SIGHUP forces a check), and
//! reloads if so. A reload that fails keeps the last good settings and logs
//! why. A reload fails closed: a file that would drop TLS, basic auth or a
//! required client certificate that the running config has is refused, since
//! an empty or half-written file (a non-atomic rewrite) looks exactly like
//! that and must never open the listener.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::config::{WebConfigError, WebSettings};

/// What identifies a file version: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

pub struct WebConfigWatcher {
    path: PathBuf,
    current: RwLock<Arc<WebSettings>>,
    stamps: Mutex<Vec<(PathBuf, Stamp)>>,
    last_reload_ok: AtomicBool,
}

impl WebConfigWatcher {
    /// Loads the file; an error here is a start-up error.
    pub fn new(path: PathBuf) -> Result<Self, WebConfigError> {
        let settings = WebSettings::load(&path)?;
        log_ignored(&settings);
        let stamps = settings
            .files
            .iter()
            .map(|f| (f.clone(), stamp(f)))
            .collect();
        Ok(Self {
            path,
            current: RwLock::new(Arc::new(settings)),
            stamps: Mutex::new(stamps),
            last_reload_ok: AtomicBool::new(true),
        })
    }

    /// Whether the latest load attempt succeeded.
    pub fn last_reload_ok(&self) -> bool {
        self.last_reload_ok.load(Ordering::Relaxed)
    }

    /// The settings in force, without checking the files.
    pub fn settings(&self) -> Arc<WebSettings> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The settings in force after reloading any changed file.
    pub fn refresh(&self) -> Arc<WebSettings> {
        self.reload(false)
    }

    /// Reloads the file whether or not it changed (SIGHUP).
    pub fn force_reload(&self) -> Arc<WebSettings> {
        self.reload(true)
    }

    fn reload(&self, force: bool) -> Arc<WebSettings> {
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        let changed = force || stamps.iter().any(|(path, old)| stamp(path) != *old);
        if changed {
            let loaded = WebSettings::load(&self.path)
                .and_then(|new| self.settings().refuse_weakening(&new).map(|()| new));
            match loaded {
                Ok(settings) => {
                    tracing::info!(file = %self.path.display(), "web config reloaded");
                    log_ignored(&settings);
                    *stamps = settings
                        .files
                        .iter()
                        .map(|f| (f.clone(), stamp(f)))
                        .collect();
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
                    self.last_reload_ok.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "web config reload failed; keeping the last good one");
                    self.last_reload_ok.store(false, Ordering::Relaxed);
                    // Remember what we saw so a broken file is reported once.
                    for (path, old) in stamps.iter_mut() {
                        *old = stamp(path);
                    }
                }
            }
        }
        drop(stamps);
        self.settings()
    }
}

fn log_ignored(settings: &WebSettings) {
    for field in &settings.ignored {
        tracing::warn!(field = *field, "web config field has no effect here");
    }
}
