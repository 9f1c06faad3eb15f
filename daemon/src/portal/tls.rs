//! HTTPS for the portal (`portal.tls_cert`, `portal.tls_key`): reads and checks the PEM
//! certificate chain and private key, terminates TLS (rustls with the ring provider, TLS 1.2
//! and 1.3, ALPN `http/1.1`) for the portal's HTTPS listener, and swaps the pair for a renewed
//! one on SIGHUP without a restart. A pair that does not load keeps the one being served.
//! Side effects: reads the two files (at start, by `--check-config`, and on every SIGHUP).

use std::{
    fs::File,
    io::{self, Read as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{
        CertificateDer, PrivateKeyDer,
        pem::{self, PemObject as _},
    },
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::{net::TcpStream, sync::watch};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PortalConfig};

/// Largest file read as a certificate chain or a key. A chain of four RSA-4096 certificates
/// is under 10 KiB; anything near this is not one (a log file, a device named by mistake).
const MAX_PEM_BYTES: u64 = 1 << 20;
/// How long a client has for its side of the handshake, from the accept: a client that sends
/// nothing (or a byte a minute) holds one of the listener's connection places only this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ALPN: the portal speaks HTTP/1.1 only (its server has no HTTP/2), so that is all it offers.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// What is wrong with the certificate or the key. Each says which key and file, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsFilesError {
    #[error(
        "portal.tls_cert and portal.tls_key go together: set both (HTTPS) or neither (plain HTTP only)"
    )]
    OnlyOne,
    #[error("{key} {}: cannot read the file; make it readable by hotspotd", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{key} {}: is larger than {MAX_PEM_BYTES} bytes, which no certificate or key is; name the PEM file", path.display()
    )]
    TooLarge { key: &'static str, path: PathBuf },
    #[error("{key} {}: is not valid PEM; give the file as an ACME client writes it", path.display())]
    Pem {
        key: &'static str,
        path: PathBuf,
        source: pem::Error,
    },
    #[error(
        "portal.tls_cert {}: holds no certificate (no -----BEGIN CERTIFICATE----- block); give the certificate chain in PEM, the portal's own certificate first (an ACME client's fullchain.pem)", path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error(
        "portal.tls_key {}: holds no private key (no -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY block); give the certificate's private key in PEM (an ACME client's privkey.pem)", path.display()
    )]
    NoKey { path: PathBuf },
    #[error(
        "portal.tls_key {}: is a private key hotspotd cannot use; give an ECDSA P-256 or P-384, Ed25519 or RSA (2048 bits or more) key", path.display()
    )]
    UnusableKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "portal.tls_key {} does not belong to the certificate in portal.tls_cert {}: give the key the certificate was issued for, or the certificate issued for this key", key.display(), cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("the portal's TLS cannot be set up")]
    Setup { source: rustls::Error },
}

impl TlsFilesError {
    /// The key whose value is at fault (for an error that names where it came from).
    #[must_use]
    pub fn key(&self) -> &'static str {
        match self {
            Self::Read { key, .. } | Self::TooLarge { key, .. } | Self::Pem { key, .. } => key,
            Self::NoKey { .. } | Self::UnusableKey { .. } | Self::Mismatch { .. } => {
                "portal.tls_key"
            }
            Self::OnlyOne | Self::NoCertificate { .. } | Self::Setup { .. } => "portal.tls_cert",
        }
    }
}

/// The crypto provider: ring, the only one built in.
#[expect(
    deprecated,
    reason = "ring has no post-quantum key exchange, which rustls 0.23.48 deprecates it for; \
              aws-lc-rs has one but needs cmake to build. The portal's answers are short-lived \
              and not secret from the client's own network, so classical X25519 is enough."
)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks `portal.tls_cert` and `portal.tls_key`: neither set (no HTTPS), or both, naming
/// a certificate chain and the private key that matches its first certificate.
pub fn check(portal: &PortalConfig) -> Result<(), TlsFilesError> {
    match (
        portal.tls_cert.as_os_str().is_empty(),
        portal.tls_key.as_os_str().is_empty(),
    ) {
        (true, true) => Ok(()),
        (false, false) => load(&portal.tls_cert, &portal.tls_key).map(drop),
        _ => Err(TlsFilesError::OnlyOne),
    }
}

/// Reads the PEM certificate chain at `cert` and the PEM private key at `key`, and checks
/// that the key is usable and belongs to the chain's first certificate.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsFilesError> {
    let cert_pem = read_pem_file("portal.tls_cert", cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsFilesError::Pem {
            key: "portal.tls_cert",
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsFilesError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_pem = read_pem_file("portal.tls_key", key)?;
    let private_key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(private_key) => private_key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsFilesError::NoKey {
                path: key.to_owned(),
            });
        }
        Err(source) => {
            return Err(TlsFilesError::Pem {
                key: "portal.tls_key",
                path: key.to_owned(),
                source,
            });
        }
    };
    let signing_key = provider()
        .key_provider
        .load_private_key(private_key)
        .map_err(|source| TlsFilesError::UnusableKey {
            path: key.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // ring's keys all know their public half, so "cannot tell" does not happen; it is not
    // taken for a match all the same.
    // (rustls says no more than "KeyMismatch", so its error is not kept.)
    certified
        .keys_match()
        .map_err(|_| TlsFilesError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        })?;
    Ok(Arc::new(certified))
}

/// The file at `path`, at most [`MAX_PEM_BYTES`] of it.
fn read_pem_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFilesError> {
    let read = |source| TlsFilesError::Read {
        key,
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(read)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsFilesError::TooLarge {
            key,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_or_empty_file_is_refused_before_it_is_parsed() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let huge = dir.path().join("huge.pem");
        let bytes = usize::try_from(MAX_PEM_BYTES).expect("fits") + 1;
        std::fs::write(&huge, vec![b'A'; bytes]).expect("write");
        let error = load(&huge, &huge).expect_err("too large");
        assert!(
            matches!(
                error,
                TlsFilesError::TooLarge {
                    key: "portal.tls_cert",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(error.key(), "portal.tls_cert");

        let empty = Path::new("/dev/null");
        let error = load(empty, empty).expect_err("empty");
        assert!(
            matches!(error, TlsFilesError::NoCertificate { .. }),
            "{error}"
        );
    }
}
