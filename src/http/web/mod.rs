//! Protection of the listener: the exporter-toolkit web-config file (TLS,
//! client certificates, basic auth, response headers), reloaded when its
//! files change.

pub mod auth;
pub mod config;
pub mod watcher;

pub use auth::BasicAuth;
pub use config::{WebConfigError, WebSettings};
pub use watcher::WebConfigWatcher;
