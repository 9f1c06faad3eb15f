//! `network.local_services` entries: the box's client services, each a TCP or UDP port or
//! `icmp`, parsed from and printed back to the text the configuration holds. Pure; no I/O.

use std::{fmt, num::NonZeroU16, str::FromStr};

use serde::{Deserialize, Serialize};

/// One of the box's free client services: what every client reaches on the box without a
/// session, and is never billed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LocalService {
    Tcp(NonZeroU16),
    Udp(NonZeroU16),
    /// ICMP, v4 and v6 (echo, errors, neighbour discovery, MLD), and IGMP.
    Icmp,
}

impl LocalService {
    /// What a client without a session needs of the box: ICMP and neighbour discovery, DNS
    /// (UDP and TCP), DHCP for IPv4 and IPv6, and the built-in portal's port, `portal.listen_port`.
    #[must_use]
    pub fn defaults() -> Vec<Self> {
        let port = |number| NonZeroU16::new(number).unwrap_or(NonZeroU16::MIN);
        vec![
            Self::Icmp,
            Self::Udp(port(53)),
            Self::Tcp(port(53)),
            Self::Udp(port(67)),
            Self::Udp(port(547)),
            Self::Tcp(port(2050)),
        ]
    }
}

/// Why an entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocalServiceError {
    #[error("must be \"icmp\" or a protocol and port like \"udp/53\" or \"tcp/2050\"")]
    Form,
    #[error("the protocol must be tcp or udp (got '{protocol}')")]
    Protocol { protocol: String },
    #[error("the port must be a number from 1 to 65535 (got '{port}')")]
    Port { port: String },
}

impl FromStr for LocalService {
    type Err = LocalServiceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("icmp") {
            return Ok(Self::Icmp);
        }
        let (protocol, port) = text.split_once('/').ok_or(LocalServiceError::Form)?;
        let number = port
            .parse::<NonZeroU16>()
            .map_err(|_| LocalServiceError::Port {
                port: port.to_owned(),
            })?;
        match protocol.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp(number)),
            "udp" => Ok(Self::Udp(number)),
            _ => Err(LocalServiceError::Protocol {
                protocol: protocol.to_owned(),
            }),
        }
    }
}

impl TryFrom<String> for LocalService {
    type Error = LocalServiceError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for LocalService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(port) => write!(f, "tcp/{port}"),
            Self::Udp(port) => write!(f, "udp/{port}"),
            Self::Icmp => f.write_str("icmp"),
        }
    }
}

impl From<LocalService> for String {
    fn from(service: LocalService) -> Self {
        service.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_ones_say_why() {
        for text in ["icmp", "udp/53", "tcp/2050", "udp/65535"] {
            let service: LocalService = text.parse().expect("valid");
            assert_eq!(service.to_string(), text);
        }
        assert_eq!(
            "TCP/80".parse::<LocalService>(),
            Ok(LocalService::Tcp(NonZeroU16::new(80).expect("non-zero")))
        );
        assert_eq!("53".parse::<LocalService>(), Err(LocalServiceError::Form));
        assert_eq!(
            "sctp/53".parse::<LocalService>(),
            Err(LocalServiceError::Protocol {
                protocol: "sctp".to_owned()
            })
        );
        for port in ["0", "65536", "", "x"] {
            assert_eq!(
                format!("udp/{port}").parse::<LocalService>(),
                Err(LocalServiceError::Port {
                    port: port.to_owned()
                })
            );
        }
    }
}
