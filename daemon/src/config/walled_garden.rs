//! Walled-garden entries: `IpNet` networks in CIDR form, host names and `*.` wildcards, each
//! with the optional port reachable there, parsed from and printed back to the text the
//! configuration holds. Pure; no I/O.

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

/// A `network.walled_garden` network, and optionally the one port reachable there. Written
/// `10.0.0.0/8`, `192.0.2.1:443`, `2001:db8::/32` or, with a port, `[2001:db8::/32]:443`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GardenNet {
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
    #[error("'{name}' is not a host name: {why}")]
    Name { name: String, why: String },
}

impl fmt::Display for GardenNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.net.addr) {
            (None, _) => write!(f, "{}", self.net),
            (Some(port), IpAddr::V4(_)) => write!(f, "{}:{port}", self.net),
            (Some(port), IpAddr::V6(_)) => write!(f, "[{}]:{port}", self.net),
        }
    }
}

impl FromStr for GardenNet {
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
        let port = port.map(parse_port).transpose()?;
        Ok(Self { net, port })
    }
}

fn parse_port(port: &str) -> Result<NonZeroU16, WalledGardenError> {
    port.parse::<NonZeroU16>()
        .map_err(|_| WalledGardenError::Port {
            port: port.to_owned(),
        })
}

/// A host name of the walled garden: its addresses are learned from the box's DNS answers
/// (`crate::garden`). `wildcard` (written `*.example.com`) covers every name under `name`
/// but not `name` itself. Kept lower-case, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GardenName {
    pub name: String,
    pub wildcard: bool,
    /// TCP/UDP destination port; `None` = every port.
    pub port: Option<NonZeroU16>,
}

/// The longest host name DNS carries (RFC 1035 2.3.4), and the longest label.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

impl GardenName {
    /// Whether `host` (lower-case, no trailing dot) is this name or, for a wildcard, under it.
    #[must_use]
    pub fn matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.len() > self.name.len()
                && host.ends_with(self.name.as_str())
                && host.as_bytes()[host.len() - self.name.len() - 1] == b'.'
        } else {
            host == self.name
        }
    }

    /// The entry without its port: `pay.example.com` or `*.example.com`.
    #[must_use]
    pub fn pattern(&self) -> String {
        if self.wildcard {
            format!("*.{}", self.name)
        } else {
            self.name.clone()
        }
    }

    fn parse(text: &str) -> Result<Self, WalledGardenError> {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (text, None),
        };
        let lower = host.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (name, wildcard) = match lower.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (lower, false),
        };
        let invalid = |why: &str| WalledGardenError::Name {
            name: host.to_owned(),
            why: why.to_owned(),
        };
        if name.contains('*') {
            return Err(invalid("a '*' may only stand first, as in *.example.com"));
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(invalid("a host name has 1 to 253 characters"));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(invalid(
                    "each part between dots must have 1 to 63 characters",
                ));
            }
            if !label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
            {
                return Err(invalid(
                    "a host name has only letters, digits, '-' and '_' between its dots",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("no part of a host name starts or ends with '-'"));
            }
        }
        if wildcard && !name.contains('.') {
            return Err(invalid(
                "a wildcard must name a domain with a dot, as in *.example.com",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            wildcard,
            port,
        })
    }
}

impl fmt::Display for GardenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.pattern()),
            None => write!(f, "{}", self.pattern()),
        }
    }
}

/// One `network.walled_garden` entry: a network or a host name, each with an optional port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum WalledGardenEntry {
    Net(GardenNet),
    Name(GardenName),
}

impl WalledGardenEntry {
    /// The network, if the entry is one.
    #[must_use]
    pub fn net(&self) -> Option<&GardenNet> {
        match self {
            Self::Net(net) => Some(net),
            Self::Name(_) => None,
        }
    }

    /// The host name, if the entry is one.
    #[must_use]
    pub fn name(&self) -> Option<&GardenName> {
        match self {
            Self::Name(name) => Some(name),
            Self::Net(_) => None,
        }
    }
}

impl fmt::Display for WalledGardenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Net(net) => net.fmt(f),
            Self::Name(name) => name.fmt(f),
        }
    }
}

impl FromStr for WalledGardenEntry {
    type Err = WalledGardenError;

    /// A network when it has brackets, a prefix, two colons (IPv6) or only digits and dots
    /// before its port; a host name otherwise.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let network = text.starts_with('[')
            || text.contains('/')
            || text.matches(':').count() > 1
            || text.split(':').next().is_none_or(|host| {
                host.bytes()
                    .all(|byte| byte.is_ascii_digit() || byte == b'.')
            });
        if network {
            text.parse().map(Self::Net)
        } else {
            GardenName::parse(text).map(Self::Name)
        }
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
