//! HTTPS for the portal's tests: self-signed certificates made at test time (rcgen) and
//! written where the daemon reads them, and a TLS client (rustls) that trusts only the
//! certificate it is given and reports the one the server presented. No I/O but the files a
//! test asks for and the connections it opens.

use std::{
    net::{SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, ServerName},
};

use crate::http::{Answer, exchange_on};

/// How long a TLS exchange may take: the daemon answers in milliseconds.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A self-signed certificate and its private key, as PEM files in a folder of the test's.
pub struct TestCert {
    /// The certificate, as the server presents it.
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCert {
    /// A new certificate (a new ECDSA P-256 key) for `names`: host names, and IP addresses
    /// as text, which become IP address names (a client checks them against the address it
    /// connected to).
    pub fn new(names: &[&str]) -> Result<Self> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let certified =
            rcgen::generate_simple_self_signed(names).context("make a self-signed certificate")?;
        Ok(Self {
            der: certified.cert.der().clone(),
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        })
    }

    /// Writes the certificate to `dir/<stem>.pem` and the key to `dir/<stem>.key`, the key
    /// with mode 0600 as docs/portal.md says to keep it; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem)
            .with_context(|| format!("write {}", cert.display()))?;
        std::fs::write(&key, &self.key_pem).with_context(|| format!("write {}", key.display()))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", key.display()))?;
        Ok((cert, key))
    }
}

/// What an HTTPS exchange brought: the answer and the certificate the server presented.
pub struct TlsAnswer {
    pub answer: Answer,
    pub served: CertificateDer<'static>,
}

/// Sends `raw` over HTTPS to `target` (connecting from the calling thread, so from its
/// network namespace), trusting only `trusted`, which must name `target`'s address. An error
/// if the connection, the handshake (an untrusted or wrong certificate) or the exchange fails.
pub fn exchange_tls(
    target: SocketAddr,
    trusted: &CertificateDer<'static>,
    raw: &[u8],
) -> Result<TlsAnswer> {
    let mut roots = RootCertStore::empty();
    roots
        .add(trusted.clone())
        .context("trust the test's certificate")?;
    let provider = Arc::new(provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // As a browser offers: HTTP/2 first.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let server_name = ServerName::from(target.ip());
    let connection = ClientConnection::new(Arc::new(config), server_name)
        .context("start a TLS client connection")?;
    let socket = TcpStream::connect_timeout(&target, Duration::from_secs(2))
        .with_context(|| format!("connect to {target}"))?;
    socket.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    socket.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    let mut stream = StreamOwned::new(connection, socket);
    // The handshake first, so its failure is told apart from the exchange's.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .with_context(|| format!("TLS handshake with {target}"))?;
    }
    let served = stream
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .context("the server presented no certificate")?
        .clone()
        .into_owned();
    // The portal speaks HTTP/1.1 only, and must say so rather than let HTTP/2 be assumed.
    let alpn = stream.conn.alpn_protocol().map(<[u8]>::to_vec);
    anyhow::ensure!(
        alpn.as_deref() == Some(b"http/1.1".as_slice()),
        "ALPN chose {:?}, not http/1.1",
        alpn.map(|name| String::from_utf8_lossy(&name).into_owned())
    );
    let answer = exchange_on(&mut stream, raw)?;
    Ok(TlsAnswer { answer, served })
}

#[expect(
    deprecated,
    reason = "the daemon's provider (ring), whatever rustls thinks of its key exchange"
)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
