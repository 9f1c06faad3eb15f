//! Walled-garden entries: `IpNet` networks in CIDR form and the optional port reachable there,
//! parsed from and printed back to the text the configuration holds. Pure; no I/O.

use std::{fmt, net::IpAddr, num::NonZeroU16, str::FromStr};

use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 network in CIDR form, `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// The network `addr/prefix_len`; the address must have no bits set past the prefix.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, WalledGardenError> {
        let max = max_prefix_len(addr);
        if prefix_len > max {
            return Err(WalledGardenError::PrefixLen {
                prefix_len: prefix_len.to_string(),
                max_prefix_len: max,
            });
        }
        let network = mask(addr, prefix_len);
        if network != addr {
            return Err(WalledGardenError::HostBits {
                network: Self {
                    addr: network,
                    prefix_len,
                },
            });
        }
        Ok(Self { addr, prefix_len })
    }

    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for IpNet {
    type Err = WalledGardenError;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address meaning that one host.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix_len) = match text.split_once('/') {
            Some((addr, prefix_len)) => (addr, Some(prefix_len)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| WalledGardenError::Addr {
            addr: addr.to_owned(),
        })?;
        let max = max_prefix_len(addr);
        let prefix_len = match prefix_len {
            None => max,
            Some(text) => text.parse().map_err(|_| WalledGardenError::PrefixLen {
                prefix_len: text.to_owned(),
                max_prefix_len: max,
            })?,
        };
        Self::new(addr, prefix_len)
    }
}

fn max_prefix_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit past the first `prefix_len` cleared; `prefix_len` is in range.
fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// One `network.walled_garden` entry: a network, and optionally the one port reachable there.
/// Written `10.0.0.0/8`, `192.0.2.1:443`, `2001:db8::/32` or, with a port, `[2001:db8::/32]:443`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WalledGardenEntry {
    pub net: IpNet,
    /// TCP/UDP destination port; `None` = every port.
    pub port: Option<NonZeroU16>,
}

/// Why a walled-garden entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalledGardenError {
    #[error("'{addr}' is not an IPv4 or IPv6 address")]
    Addr { addr: String },
    #[error("the prefix length must be a number from 0 to {max_prefix_len} (got '{prefix_len}')")]
    PrefixLen {
        prefix_len: String,
        max_prefix_len: u8,
    },
    #[error("the address has bits set past the prefix; did you mean {network}?")]
    HostBits { network: IpNet },
    #[error("the port must be a number from 1 to 65535 (got '{port}')")]
    Port { port: String },
    #[error("has a '[' without its ']'")]
    Bracket,
}

impl fmt::Display for WalledGardenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.net.addr) {
            (None, _) => write!(f, "{}", self.net),
            (Some(port), IpAddr::V4(_)) => write!(f, "{}:{port}", self.net),
            (Some(port), IpAddr::V6(_)) => write!(f, "[{}]:{port}", self.net),
        }
    }
}

impl FromStr for WalledGardenEntry {
    type Err = WalledGardenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (net, port) = if let Some(rest) = text.strip_prefix('[') {
            let (net, after) = rest.split_once(']').ok_or(WalledGardenError::Bracket)?;
            match after.strip_prefix(':') {
                Some(port) => (net, Some(port)),
                None if after.is_empty() => (net, None),
                None => {
                    return Err(WalledGardenError::Port {
                        port: after.to_owned(),
                    });
                }
            }
        } else if text.matches(':').count() == 1 {
            // One colon can only be IPv4 with a port: IPv6 has at least two, and takes its
            // port in brackets.
            let (net, port) = text.split_once(':').unwrap_or((text, ""));
            (net, Some(port))
        } else {
            (text, None)
        };
        let net = net.parse()?;
        let port = port
            .map(|port| {
                port.parse::<NonZeroU16>()
                    .map_err(|_| WalledGardenError::Port {
                        port: port.to_owned(),
                    })
            })
            .transpose()?;
        Ok(Self { net, port })
    }
}

impl TryFrom<String> for WalledGardenEntry {
    type Error = WalledGardenError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<WalledGardenEntry> for String {
    fn from(entry: WalledGardenEntry) -> Self {
        entry.to_string()
    }
}
