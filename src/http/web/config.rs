//! Reads the exporter-toolkit web-config format, so operators can reuse the
//! files they already give node_exporter and friends:
//! <https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md>.
//!
//! Every field that would *restrict* access but cannot be honoured with
//! rustls is refused at load time rather than silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// A web-config problem; `field` is the YAML path of the culprit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("web config {file}: {field}: {reason}")]
pub struct WebConfigError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// What a loaded web-config file asks of the listener.
#[derive(Clone, Default)]
pub struct WebSettings {
    pub tls: Option<Arc<ServerConfig>>,
    /// Whether clients must present a verified certificate.
    pub client_cert_required: bool,
    /// User name -> bcrypt hash.
    pub users: BTreeMap<String, String>,
    /// A hash of the users' (highest) cost, checked for unknown user names
    /// so that they cost as much as known ones.
    pub dummy_hash: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Files whose change triggers a reload (the config and what it names).
    pub files: Vec<PathBuf>,
    /// Accepted but without effect here (logged once at load).
    pub ignored: Vec<&'static str>,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("tls", &self.tls.is_some())
            .field("client_cert_required", &self.client_cert_required)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("files", &self.files)
            .finish()
    }
}

impl WebSettings {
    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Refuses `new` as a reload of `self` when it would remove a
    /// protection `self` has: TLS, basic auth, or a required client
    /// certificate. Removing one takes a restart, so that an empty,
    /// comment-only or half-written file can never open the listener.
    pub fn refuse_weakening(&self, new: &WebSettings) -> Result<(), WebConfigError> {
        let file = new
            .files
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let refuse = |field: &str, what: &str| WebConfigError {
            file: file.clone(),
            field: field.to_owned(),
            reason: format!(
                "the new file would turn off {what}, which the running config has; \
                 refused (a reload never weakens the listener; restart to remove it)"
            ),
        };
        if self.tls.is_some() && new.tls.is_none() {
            return Err(refuse("tls_server_config", "TLS"));
        }
        if self.auth_enabled() && !new.auth_enabled() {
            return Err(refuse("basic_auth_users", "basic auth"));
        }
        if self.client_cert_required && !new.client_cert_required {
            return Err(refuse(
                "tls_server_config.client_auth_type",
                "required client certificates",
            ));
        }
        Ok(())
    }

    /// Loads and validates `path`; relative file names inside it are
    /// relative to its directory, as in exporter-toolkit.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let file = path.display().to_string();
        let err = |field: &str, reason: String| WebConfigError {
            file: file.clone(),
            field: field.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err("(file)", e.to_string()))?;
        let parsed: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| err("(yaml)", e.to_string()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut settings = WebSettings {
            files: vec![path.to_path_buf()],
            ..WebSettings::default()
        };

        if let Some(users) = parsed.basic_auth_users {
            for (user, hash) in &users {
                if user.is_empty() || user.contains(':') {
                    return Err(err(
                        "basic_auth_users",
                        format!("user name {user:?} must be non-empty and free of ':'"),
                    ));
                }
                bcrypt_cost(hash)
                    .map_err(|reason| err(&format!("basic_auth_users.{user}"), reason))?;
            }
            // Made once per load: at cost 12 that is ~200 ms, paid here
            // rather than by the first request for an unknown user.
            settings.dummy_hash = super::auth::dummy_hash(&users);
            settings.users = users;
        }

        if let Some(http) = parsed.http_server_config {
            if http.http2.is_some() {
                settings
                    .ignored
                    .push("http_server_config.http2 (only HTTP/1.1 is served)");
            }
            for (name, value) in http.headers.unwrap_or_default() {
                let field = format!("http_server_config.headers.{name}");
                let header_name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| err(&field, e.to_string()))?;
                let header_value =
                    HeaderValue::from_str(&value).map_err(|e| err(&field, e.to_string()))?;
                settings.headers.push((header_name, header_value));
            }
        }

        if let Some(tls) = parsed.tls_server_config {
            load_tls(tls, dir, &mut settings, &err)?;
        }
        Ok(settings)
    }
}

/// Checks a bcrypt hash's shape and returns its cost.
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    let parts: Vec<&str> = hash.split('$').collect();
    let ok_prefix = matches!(parts.get(1), Some(&("2a" | "2b" | "2x" | "2y")));
    let cost = parts.get(2).and_then(|c| c.parse::<u32>().ok());
    match (ok_prefix, cost, parts.get(3)) {
        (true, Some(cost), Some(rest))
            if parts.len() == 4 && rest.len() == 53 && (4..=31).contains(&cost) =>
        {
            Ok(cost)
        }
        _ => Err(
            "expected a bcrypt hash like $2y$10$... (generate one with htpasswd -nBC 10 USER)"
                .into(),
        ),
    }
}

fn resolve(dir: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn tls_version(
    field: &str,
    value: &str,
    err: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<u8, WebConfigError> {
    match value {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(err(
            field,
            format!("{value} is obsolete and not supported; use TLS12 or TLS13"),
        )),
        other => Err(err(
            field,
            format!("unknown version {other:?}; use TLS12 or TLS13"),
        )),
    }
}

fn load_tls(
    tls: TlsFile,
    dir: &Path,
    settings: &mut WebSettings,
    err: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<(), WebConfigError> {
    let field = "tls_server_config";
    let required = |name: &str| {
        err(
            &format!("{field}.{name}"),
            "required when tls_server_config is set".into(),
        )
    };
    let cert_file = tls.cert_file.clone().ok_or_else(|| required("cert_file"))?;
    let key_file = tls.key_file.clone().ok_or_else(|| required("key_file"))?;
    refuse_or_note_unsupported(&tls, settings, err)?;
    let cert_path = resolve(dir, &cert_file);
    let key_path = resolve(dir, &key_file);
    let (certs, key) = read_identity(&cert_path, &key_path, err)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&protocol_versions(&tls, err)?)
        .map_err(|e| err(&format!("{field}.min_version"), e.to_string()))?;
    let builder = match client_verifier(&tls, dir, provider, settings, err)? {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        err(
            &format!("{field}.key_file"),
            format!("does not match cert_file: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    settings.files.push(cert_path);
    settings.files.push(key_path);
    settings.tls = Some(Arc::new(config));
    Ok(())
}

/// Settings rustls cannot honour: refused when ignoring them would weaken
/// the listener, noted (and logged at start) when rustls' fixed choice is
/// at least as strict.
fn refuse_or_note_unsupported(
    tls: &TlsFile,
    settings: &mut WebSettings,
    err: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<(), WebConfigError> {
    if tls
        .client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(err(
            "tls_server_config.client_allowed_sans",
            "not supported by this exporter; restrict clients with client_ca_file instead".into(),
        ));
    }
    if tls.cipher_suites.is_some() {
        settings
            .ignored
            .push("tls_server_config.cipher_suites (rustls offers only modern AEAD suites)");
    }
    if tls.curve_preferences.is_some() {
        settings
            .ignored
            .push("tls_server_config.curve_preferences (rustls defaults: X25519, P-256, P-384)");
    }
    if tls.prefer_server_cipher_suites.is_some() {
        settings
            .ignored
            .push("tls_server_config.prefer_server_cipher_suites");
    }
    Ok(())
}

fn read_identity(
    cert_path: &Path,
    key_path: &Path,
    err: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), WebConfigError> {
    let cert_field = "tls_server_config.cert_file";
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(cert_field, format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(err(
            cert_field,
            format!("{}: no certificate found", cert_path.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        err(
            "tls_server_config.key_file",
            format!("{}: {e}", key_path.display()),
        )
    })?;
    Ok((certs, key))
}

/// The TLS versions between `min_version` and `max_version` (TLS 1.2 and
/// 1.3 when unset).
fn protocol_versions(
    tls: &TlsFile,
    err: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, WebConfigError> {
    let version = |name: &str, value: &Option<String>, default: u8| {
        value
            .as_deref()
            .map(|v| tls_version(&format!("tls_server_config.{name}"), v, err))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let min = version("min_version", &tls.min_version, 12)?;
    let max = version("max_version", &tls.max_version, 13)?;
    if min > max {
        return Err(err(
            "tls_server_config.min_version",
            "is above max_version".into(),
        ));
    }
    Ok(
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect(),
    )
}

/// The client-certificate verifier `client_auth_type` asks for, if any.
fn client_verifier(
    tls: &TlsFile,
    dir: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
    settings: &mut WebSettings,
    err: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, WebConfigError> {
    let auth_type = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let required = match auth_type {
        "NoClientCert" => {
            if tls.client_ca_file.is_some() {
                settings
                    .ignored
                    .push("tls_server_config.client_ca_file (client_auth_type is NoClientCert)");
            }
            return Ok(None);
        }
        "VerifyClientCertIfGiven" => false,
        "RequireAndVerifyClientCert" => true,
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(err(
                "tls_server_config.client_auth_type",
                format!("{auth_type} accepts unverified certificates and is not supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
        other => {
            return Err(err(
                "tls_server_config.client_auth_type",
                format!("unknown value {other:?}; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
    };
    let ca_field = "tls_server_config.client_ca_file";
    let ca_file = tls.client_ca_file.as_ref().ok_or_else(|| {
        err(
            ca_field,
            format!("required with client_auth_type {auth_type}"),
        )
    })?;
    let ca_path = resolve(dir, ca_file);
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&ca_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(ca_field, format!("{}: {e}", ca_path.display())))?;
    let (added, _) = roots.add_parsable_certificates(cas);
    if added == 0 {
        return Err(err(
            ca_field,
            format!("{}: no usable CA certificate", ca_path.display()),
        ));
    }
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !required {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier.build().map_err(|e| err(ca_field, e.to_string()))?;
    settings.files.push(ca_path);
    settings.client_cert_required = required;
    Ok(Some(verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sce-webcfg-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const HASH: &str = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";

    #[test]
    fn basic_auth_and_headers() {
        let d = tempdir("auth");
        let p = write(
            &d,
            "web.yml",
            &format!("basic_auth_users:\n  prometheus: '{HASH}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"),
        );
        let s = WebSettings::load(&p).unwrap();
        assert!(s.auth_enabled());
        assert!(s.tls.is_none());
        assert_eq!(s.headers[0].0.as_str(), "x-frame-options");
    }

    #[test]
    fn errors_name_the_field() {
        let d = tempdir("errors");
        for (text, field) in [
            (
                "basic_auth_users:\n  u: 'plain-password'\n",
                "basic_auth_users.u",
            ),
            (
                "tls_server_config:\n  key_file: k.pem\n",
                "tls_server_config.cert_file",
            ),
            (
                "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
                "tls_server_config.cert_file",
            ),
            ("tls_srever_config: {}\n", "(yaml)"),
            ("basic_auth_users: [1, 2]\n", "(yaml)"),
        ] {
            let p = write(&d, "web.yml", text);
            let e = WebSettings::load(&p).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
        let e = WebSettings::load(&d.join("absent.yml")).unwrap_err();
        assert_eq!(e.field, "(file)");
    }

    #[test]
    fn a_reload_may_not_drop_tls_or_auth() {
        let with_auth = WebSettings {
            users: BTreeMap::from([("u".to_owned(), HASH.to_owned())]),
            ..WebSettings::default()
        };
        let open = WebSettings::default();
        let e = with_auth.refuse_weakening(&open).unwrap_err();
        assert_eq!(e.field, "basic_auth_users");
        assert!(with_auth.refuse_weakening(&with_auth.clone()).is_ok());
        // Adding protection is always allowed.
        assert!(open.refuse_weakening(&with_auth).is_ok());
        let required = WebSettings {
            client_cert_required: true,
            ..with_auth.clone()
        };
        let e = required.refuse_weakening(&with_auth).unwrap_err();
        assert_eq!(e.field, "tls_server_config.client_auth_type");
    }

    #[test]
    fn empty_file_means_no_protection() {
        let d = tempdir("empty");
        let s = WebSettings::load(&write(&d, "web.yml", "")).unwrap();
        assert!(!s.auth_enabled() && s.tls.is_none());
    }
}
