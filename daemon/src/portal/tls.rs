//! HTTPS for the portal (`portal.tls_cert`, `portal.tls_key`): with the pair that
//! `crate::tls_files` reads and checks, terminates TLS (rustls with the ring provider, TLS 1.2
//! and 1.3, ALPN `http/1.1`) for the portal's HTTPS listener, and swaps the pair for a renewed
//! one on SIGHUP without a restart. A pair that does not load keeps the one being served.
//! Side effects: reads the two files (at start, by `--check-config`, and on every SIGHUP).

use std::{
    net::SocketAddr,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::{net::TcpStream, sync::watch};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, PortalConfig},
    tls_files::{TlsFilesError, load, provider},
};

/// Largest file read as a certificate chain or a key. A chain of four RSA-4096 certificates
/// How long a client has for its side of the handshake, from the accept: a client that sends
/// nothing (or a byte a minute) holds one of the listener's connection places only this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ALPN: the portal speaks HTTP/1.1 only (its server has no HTTP/2), so that is all it offers.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The certificate and key being served; SIGHUP swaps them, each handshake takes the
/// current ones.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl Current {
    fn get(&self) -> Arc<CertifiedKey> {
        // A writer that panicked left a whole Arc behind; it is still a valid pair.
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, certified: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = certified;
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate for every name: the portal has one host name.
        Some(self.get())
    }
}

/// The portal's TLS: what its HTTPS listener hands each accepted connection to.
#[derive(Clone)]
pub struct PortalTls {
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

impl PortalTls {
    /// TLS with the pair in `portal.tls_cert` and `portal.tls_key`.
    pub fn new(portal: &PortalConfig) -> Result<Self, TlsFilesError> {
        let certified = load(&portal.tls_cert, &portal.tls_key)?;
        let current = Arc::new(Current(RwLock::new(certified)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsFilesError::Setup { source })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Self {
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The handshake with the client at `peer`, within [`HANDSHAKE_TIMEOUT`]; `None` (logged
    /// at debug: a client's mistake or a scan, nothing the operator must act on) if it fails.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                tracing::debug!(%peer, error = %crate::text::chain(&error), "a TLS handshake with the portal failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "a client did not finish its TLS handshake with the portal within {} s", HANDSHAKE_TIMEOUT.as_secs());
                None
            }
        }
    }

    /// Loads the certificate and key again (a renewal) on every new configuration from
    /// `reloads` that has them, until `shutdown`. A pair that does not load is logged and the
    /// served one kept. Turning HTTPS off or on waits for a restart (the reload says so).
    pub async fn follow_reloads(
        self,
        mut reloads: watch::Receiver<Arc<Config>>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = reloads.changed() => if changed.is_err() { return },
            }
            let config = Arc::clone(&reloads.borrow_and_update());
            let portal = &config.portal;
            if !portal.tls_enabled() {
                continue;
            }
            let (cert, key) = (portal.tls_cert.clone(), portal.tls_key.clone());
            let loaded = tokio::task::spawn_blocking(move || load(&cert, &key)).await;
            match loaded {
                Ok(Ok(certified)) => {
                    self.current.set(certified);
                    tracing::info!(cert = %portal.tls_cert.display(), key = %portal.tls_key.display(), "the portal's certificate and key are reloaded");
                }
                Ok(Err(error)) => tracing::error!(
                    "the portal's new certificate is not taken: {}; HTTPS keeps serving the previous one",
                    crate::text::chain(&error)
                ),
                Err(error) => tracing::error!(
                    error = %crate::text::chain(&error),
                    "the portal's new certificate is not taken; HTTPS keeps serving the previous one"
                ),
            }
        }
    }
}
