//! hotspotd as a RADIUS client (a NAS; docs/radius.md): codes that are no local voucher, and
//! optionally new devices' MACs, are asked of the RADIUS servers (`radius.auth_server`, with
//! failover to `radius.auth_servers`); an Access-Accept becomes a session as a voucher's does.
//! The round trips run in tasks of their own, never on the control task. Side effects: UDP to
//! the configured servers.

pub mod client;
pub mod coa;
pub mod codec;
pub mod dict;
pub mod grant;
pub mod spool;

use std::net::Ipv4Addr;

pub use client::{ExchangeError, Servers};
pub use grant::Grant;

use crate::{config::RadiusConfig, mac::MacAddr};
use codec::{Attribute, Packet};

/// Who asks to log in, and from where.
#[derive(Clone, Debug)]
pub struct Login {
    /// User-Name: the code as typed (the portal sends it upper-case), or the MAC.
    pub user: String,
    pub password: String,
    pub mac: MacAddr,
    /// Framed-IP-Address: the device's IPv4 address, when known.
    pub ip: Option<Ipv4Addr>,
}

/// What the servers said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accept(Grant),
    /// Access-Reject, with its Reply-Message if any.
    Reject(Option<String>),
}

/// `mac` as RADIUS writes a station (RFC 3580 §3.21): `AA-BB-CC-DD-EE-FF`.
#[must_use]
pub fn station(mac: MacAddr) -> String {
    mac.to_string().replace(':', "-").to_ascii_uppercase()
}

/// The auth servers of `config`.
#[must_use]
pub fn auth_servers(config: &RadiusConfig) -> Servers {
    Servers {
        addresses: config.auth_servers(),
        secret: config.secret.as_bytes().to_vec(),
        timeout: config.timeout(),
        retries: config.retries,
    }
}

/// Asks the servers whether `login` may log in (PAP): User-Name, User-Password,
/// NAS-Identifier, Called-Station-Id (the NAS-Identifier), Calling-Station-Id (the MAC),
/// Framed-IP-Address, Service-Type Login-User, NAS-Port-Type Wireless-802.11,
/// Message-Authenticator. Every answer must carry a right Message-Authenticator.
pub async fn authenticate(config: &RadiusConfig, login: &Login) -> Result<Outcome, ExchangeError> {
    let servers = auth_servers(config);
    let nas_identifier = config.nas_identifier();
    let secret = config.secret.as_bytes();
    let answer = servers
        .exchange(
            |identifier| {
                let authenticator = client::random::<16>()?;
                let mut attributes = vec![
                    Attribute::text(dict::USER_NAME, &login.user),
                    Attribute::new(
                        dict::USER_PASSWORD,
                        codec::hide_password(login.password.as_bytes(), secret, &authenticator),
                    ),
                    Attribute::text(dict::NAS_IDENTIFIER, &nas_identifier),
                    Attribute::text(dict::CALLED_STATION_ID, &nas_identifier),
                    Attribute::text(dict::CALLING_STATION_ID, &station(login.mac)),
                    Attribute::integer(dict::SERVICE_TYPE, dict::SERVICE_TYPE_LOGIN),
                    Attribute::integer(dict::NAS_PORT_TYPE, dict::NAS_PORT_TYPE_WIRELESS),
                ];
                if let Some(ip) = login.ip {
                    attributes.push(Attribute::new(dict::FRAMED_IP_ADDRESS, ip.octets()));
                }
                let packet = Packet {
                    code: dict::ACCESS_REQUEST,
                    identifier,
                    authenticator,
                    attributes,
                };
                Ok((codec::encode_access_request(packet, secret)?, authenticator))
            },
            true,
        )
        .await?;
    let grant = Grant::of(&answer.packet);
    match answer.packet.code {
        dict::ACCESS_ACCEPT => Ok(Outcome::Accept(grant)),
        _ => Ok(Outcome::Reject(grant.message)),
    }
}
