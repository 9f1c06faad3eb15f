//! The portal's certificate and key as files (`portal.tls_cert`, `portal.tls_key`): reads
//! the PEM chain and key, and checks that the key is usable and belongs to the chain's first
//! certificate. On the lowest floor, so the config's check and the portal's listener share
//! it. Side effects: reads the two files.

use std::{
    fs::File,
    io::{self, Read as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{
        CertificateDer, PrivateKeyDer,
        pem::{self, PemObject as _},
    },
    sign::CertifiedKey,
};

/// is under 10 KiB; anything near this is not one (a log file, a device named by mistake).
const MAX_PEM_BYTES: u64 = 1 << 20;

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
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks `portal.tls_cert` and `portal.tls_key`: neither set (no HTTPS), or both, naming
/// a certificate chain and the private key that matches its first certificate.
pub fn check(cert: &Path, key: &Path) -> Result<(), TlsFilesError> {
    match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
        (true, true) => Ok(()),
        (false, false) => load(cert, key).map(drop),
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
