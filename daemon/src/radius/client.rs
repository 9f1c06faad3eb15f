//! Asking RADIUS servers: one exchange (a request sent, retried after `radius.timeout_ms`,
//! up to `radius.retries` more times, the same packet each time as RFC 5080 §2.2.1 asks), and
//! failover (the next server when one does not answer). Side effects: UDP from an ephemeral
//! port to the configured servers; reads /dev/urandom for identifiers and authenticators.

use std::{io::Read as _, net::SocketAddr, time::Duration};

use tokio::net::UdpSocket;

use super::codec::{CodecError, Packet, verify_response};

/// Why no server answered; the message names them and what to check.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(
        "no RADIUS server answered ({tried}); check that they run, that this box is in their clients.conf with radius.secret, and the network between"
    )]
    NoAnswer { tried: String },
    #[error("cannot draw random bytes from /dev/urandom")]
    Random(#[source] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// How to reach the servers: in order, each tried `1 + retries` times, `timeout` apart.
#[derive(Clone, Debug)]
pub struct Servers {
    pub addresses: Vec<String>,
    pub secret: Vec<u8>,
    pub timeout: Duration,
    pub retries: u64,
}

/// `N` random bytes.
pub fn random<const N: usize>() -> Result<[u8; N], ExchangeError> {
    let mut bytes = [0; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .map_err(ExchangeError::Random)?;
    Ok(bytes)
}

/// What a server answered, and which server it was.
#[derive(Debug)]
pub struct Answer {
    pub packet: Packet,
    pub server: String,
}

impl Servers {
    /// Sends the request `encode` makes (given the identifier, for each server anew) and
    /// returns the first authentic answer. `authenticator` is the request's, which the answer's
    /// is checked against; `require_message_authenticator` for Access-Accept/Reject. Answers that
    /// fail the checks are logged and waited past (a forger cannot end the wait early).
    pub async fn exchange(
        &self,
        encode: impl Fn(u8) -> Result<(Vec<u8>, [u8; 16]), ExchangeError>,
        require_message_authenticator: bool,
    ) -> Result<Answer, ExchangeError> {
        let mut tried = Vec::new();
        for server in &self.addresses {
            let [identifier] = random::<1>()?;
            let (request, authenticator) = encode(identifier)?;
            match self
                .ask(
                    server,
                    &request,
                    identifier,
                    &authenticator,
                    require_message_authenticator,
                )
                .await
            {
                Ok(packet) => {
                    return Ok(Answer {
                        packet,
                        server: server.clone(),
                    });
                }
                Err(why) => {
                    tracing::warn!(
                        server,
                        why,
                        "a RADIUS server did not answer; trying the next"
                    );
                    tried.push(format!("{server}: {why}"));
                }
            }
        }
        Err(ExchangeError::NoAnswer {
            tried: tried.join("; "),
        })
    }

    /// One server: the request sent up to `1 + retries` times; `Err` says why none came back.
    async fn ask(
        &self,
        server: &str,
        request: &[u8],
        identifier: u8,
        authenticator: &[u8; 16],
        require_message_authenticator: bool,
    ) -> Result<Packet, String> {
        let address: SocketAddr = tokio::net::lookup_host(server)
            .await
            .map_err(|error| format!("cannot resolve: {error}"))?
            .next()
            .ok_or_else(|| "its name has no address".to_owned())?;
        let local: SocketAddr = if address.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|error| format!("cannot open a UDP socket: {error}"))?;
        socket
            .connect(address)
            .await
            .map_err(|error| format!("cannot reach it: {error}"))?;
        let mut buffer = vec![0; super::codec::MAX_PACKET_LEN];
        for _ in 0..=self.retries {
            if let Err(error) = socket.send(request).await {
                // Unreachable now (ICMP): wait the timeout anyway, it may come back.
                tracing::debug!(server, %error, "sending to a RADIUS server failed");
            }
            let until = tokio::time::Instant::now() + self.timeout;
            loop {
                let Ok(received) = tokio::time::timeout_at(until, socket.recv(&mut buffer)).await
                else {
                    break;
                };
                let Ok(len) = received else {
                    // ICMP port unreachable arrives as an error on a connected socket.
                    tokio::time::sleep_until(until).await;
                    break;
                };
                let bytes = &buffer[..len];
                if bytes.get(1) != Some(&identifier) {
                    continue;
                }
                match verify_response(
                    bytes,
                    authenticator,
                    &self.secret,
                    require_message_authenticator,
                ) {
                    Ok(packet) => return Ok(packet),
                    Err(error) => {
                        tracing::warn!(server, error = %crate::text::chain(&error), "a RADIUS answer was refused");
                    }
                }
            }
        }
        Err(format!(
            "no answer in {} tries of {} ms",
            self.retries + 1,
            self.timeout.as_millis()
        ))
    }
}
