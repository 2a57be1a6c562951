//! TLS plumbing shared by the pool client and the listener.

/// Installs ring as the process-wide rustls provider (idempotent). We build
/// rustls with ring rather than aws-lc-rs: it needs no cmake or assembler
/// toolchain and builds much faster on small machines.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
