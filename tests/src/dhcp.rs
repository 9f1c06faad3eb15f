//! Just enough of a DHCP client to read what a real DHCP server offers: a DHCPv4 DISCOVER
//! (broadcast, asking for chosen options) and its OFFER, and a DHCPv6 Information-request
//! (to `ff02::1:2`) and its Reply, with their options. Nothing is configured from the answers
//! (a harness client has its addresses already); the sockets are made on a thread inside the
//! client's namespace, bound to its interface, and closed once the answer is in.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt, socket, sockopt,
};

use crate::netns::Netns;

const DHCPV4_SERVER_PORT: u16 = 67;
const DHCPV4_CLIENT_PORT: u16 = 68;
const DHCPV6_SERVER_PORT: u16 = 547;
const DHCPV6_CLIENT_PORT: u16 = 546;
/// All DHCPv6 relay agents and servers on the link (RFC 8415).
const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// The magic cookie that starts the options of a DHCPv4 message (RFC 2131).
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// DHCPv4 option codes (RFC 2132).
const OPTION_PAD: u8 = 0;
const OPTION_MESSAGE_TYPE: u8 = 53;
const OPTION_PARAMETER_REQUEST_LIST: u8 = 55;
const OPTION_END: u8 = 255;
const DHCPDISCOVER: u8 = 1;
const DHCPOFFER: u8 = 2;
/// BOOTP's fixed part: op to file, before the cookie.
const BOOTP_FIXED_LEN: usize = 236;
/// Some servers ignore a message shorter than a BOOTP one (RFC 1542: 300 bytes).
const BOOTP_MIN_LEN: usize = 300;
/// The `flags` bit asking the server to broadcast its answer: the client has no address yet
/// as far as the server knows, so a unicast reply could not reach it.
const FLAG_BROADCAST: u16 = 0x8000;

/// DHCPv6 message types and option codes (RFC 8415).
const INFORMATION_REQUEST: u8 = 11;
const REPLY: u8 = 7;
const OPTION6_CLIENTID: u16 = 1;
const OPTION6_ORO: u16 = 6;
const OPTION6_ELAPSED_TIME: u16 = 8;
/// DUID-LL (type 3) of an Ethernet (hardware type 1) address.
const DUID_LL: u16 = 3;
const HARDWARE_ETHERNET: u16 = 1;

/// How often a request is sent again while no answer came.
const RESEND_EVERY: Duration = Duration::from_secs(1);
const MAX_MESSAGE_LEN: usize = 1_500;

/// A DHCPv4 OFFER: the address offered and every option, by code.
#[derive(Clone, Debug)]
pub struct Offer {
    pub your_address: Ipv4Addr,
    pub options: BTreeMap<u8, Vec<u8>>,
}

/// Broadcasts a DISCOVER from `iface` in `netns` as the client `mac`, asking for the options
/// `requested`, and returns the first OFFER for it within `timeout` (the DISCOVER is sent
/// again every second meanwhile).
pub fn discover(
    netns: &Netns,
    iface: &str,
    mac: [u8; 6],
    requested: &[u8],
    timeout: Duration,
) -> Result<Offer> {
    let iface = iface.to_owned();
    let requested = requested.to_vec();
    netns.run(move || -> Result<Offer> {
        let socket = udp_socket(AddressFamily::Inet, &iface, DHCPV4_CLIENT_PORT)?;
        let xid = transaction_id();
        let message = discover_message(xid, mac, &requested);
        let server = SocketAddr::from((Ipv4Addr::BROADCAST, DHCPV4_SERVER_PORT));
        exchange(&socket, &message, server, timeout, |answer| {
            parse_offer(answer, xid, mac)
        })
        .with_context(|| format!("no DHCPv4 OFFER on {iface} within {timeout:?}"))
    })?
}

/// Sends a DHCPv6 Information-request from `iface` in `netns` as the client `mac`, asking for
/// the options `requested`, and returns the options of the first Reply to it within
/// `timeout`, by code.
pub fn information_request(
    netns: &Netns,
    iface: &str,
    mac: [u8; 6],
    requested: &[u16],
    timeout: Duration,
) -> Result<BTreeMap<u16, Vec<u8>>> {
    let iface = iface.to_owned();
    let requested = requested.to_vec();
    netns.run(move || -> Result<BTreeMap<u16, Vec<u8>>> {
        let socket = udp_socket(AddressFamily::Inet6, &iface, DHCPV6_CLIENT_PORT)?;
        let ifindex = nix::net::if_::if_nametoindex(iface.as_str())
            .with_context(|| format!("no interface {iface}"))?;
        let xid = transaction_id() & 0x00ff_ffff;
        let message = information_request_message(xid, mac, &requested);
        let servers = SocketAddr::V6(SocketAddrV6::new(
            ALL_DHCP_SERVERS,
            DHCPV6_SERVER_PORT,
            0,
            ifindex,
        ));
        exchange(&socket, &message, servers, timeout, |answer| {
            parse_reply(answer, xid)
        })
        .with_context(|| format!("no DHCPv6 Reply on {iface} within {timeout:?}"))
    })?
}

/// A UDP socket on `port` of every address of `iface` (`SO_BINDTODEVICE`), allowed to
/// broadcast; `SO_REUSEADDR`, so a client already on the port does not stop it.
fn udp_socket(family: AddressFamily, iface: &str, port: u16) -> Result<UdpSocket> {
    let fd: OwnedFd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .context("create a UDP socket")?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
    setsockopt(&fd, sockopt::Broadcast, &true).context("SO_BROADCAST")?;
    setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(iface))
        .with_context(|| format!("SO_BINDTODEVICE {iface}"))?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    match family {
        AddressFamily::Inet6 => {
            setsockopt(&fd, sockopt::Ipv6V6Only, &true).context("IPV6_V6ONLY")?;
            bind(
                raw,
                &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
            )
        }
        _ => bind(
            raw,
            &SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        ),
    }
    .with_context(|| format!("bind UDP port {port} on {iface}"))?;
    Ok(UdpSocket::from(fd))
}

/// Sends `message` to `to`, again every [`RESEND_EVERY`], until `accept` takes an answer or
/// `timeout` passes. Answers `accept` returns `None` for (another client's) are skipped.
fn exchange<T>(
    socket: &UdpSocket,
    message: &[u8],
    to: SocketAddr,
    timeout: Duration,
    mut accept: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut buffer = vec![0u8; MAX_MESSAGE_LEN];
    while Instant::now() < deadline {
        socket
            .send_to(message, to)
            .with_context(|| format!("send to {to}"))?;
        let resend_at = (Instant::now() + RESEND_EVERY).min(deadline);
        loop {
            let left = resend_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv_from(&mut buffer) {
                Ok((len, _)) => {
                    if let Some(answer) = accept(&buffer[..len]) {
                        return Ok(answer);
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => return Err(error).context("receive"),
            }
        }
    }
    bail!("no answer")
}

/// A transaction id that differs between calls and processes.
fn transaction_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

/// A DHCPDISCOVER (RFC 2131) from `mac` asking for the options `requested`, with the
/// broadcast flag set.
fn discover_message(xid: u32, mac: [u8; 6], requested: &[u8]) -> Vec<u8> {
    let mut message = vec![0u8; BOOTP_FIXED_LEN];
    message[0] = 1; // op: BOOTREQUEST
    message[1] = 1; // htype: Ethernet
    message[2] = 6; // hlen
    message[4..8].copy_from_slice(&xid.to_be_bytes());
    message[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    message[28..34].copy_from_slice(&mac); // chaddr
    message.extend_from_slice(&MAGIC_COOKIE);
    message.extend_from_slice(&[OPTION_MESSAGE_TYPE, 1, DHCPDISCOVER]);
    message.push(OPTION_PARAMETER_REQUEST_LIST);
    message.push(u8::try_from(requested.len()).unwrap_or(u8::MAX));
    message.extend(requested.iter().take(usize::from(u8::MAX)));
    message.push(OPTION_END);
    message.resize(message.len().max(BOOTP_MIN_LEN), OPTION_PAD);
    message
}

/// The OFFER in `message` if it is one, for transaction `xid` and client `mac`.
fn parse_offer(message: &[u8], xid: u32, mac: [u8; 6]) -> Option<Offer> {
    let fixed = message.get(..BOOTP_FIXED_LEN)?;
    let is_ours = fixed[0] == 2 && fixed[4..8] == xid.to_be_bytes() && fixed[28..34] == mac;
    if !is_ours || message.get(BOOTP_FIXED_LEN..BOOTP_FIXED_LEN + 4)? != MAGIC_COOKIE {
        return None;
    }
    let options = dhcpv4_options(&message[BOOTP_FIXED_LEN + 4..])?;
    if options.get(&OPTION_MESSAGE_TYPE)?.as_slice() != [DHCPOFFER] {
        return None;
    }
    let your_address = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
    Some(Offer {
        your_address,
        options,
    })
}

/// DHCPv4 options (code, length, value) up to the end option; `None` if one runs past the
/// message. A code seen twice has its values joined, as RFC 3396 says.
fn dhcpv4_options(mut bytes: &[u8]) -> Option<BTreeMap<u8, Vec<u8>>> {
    let mut options: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    while let Some((&code, rest)) = bytes.split_first() {
        match code {
            OPTION_PAD => bytes = rest,
            OPTION_END => break,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let value = rest.get(..usize::from(len))?;
                options.entry(code).or_default().extend_from_slice(value);
                bytes = &rest[usize::from(len)..];
            }
        }
    }
    Some(options)
}

/// A DHCPv6 Information-request (RFC 8415) from `mac` (its DUID-LL) asking for `requested`.
fn information_request_message(xid: u32, mac: [u8; 6], requested: &[u16]) -> Vec<u8> {
    let mut message = vec![INFORMATION_REQUEST];
    message.extend_from_slice(&xid.to_be_bytes()[1..]);
    let mut duid = Vec::with_capacity(10);
    duid.extend_from_slice(&DUID_LL.to_be_bytes());
    duid.extend_from_slice(&HARDWARE_ETHERNET.to_be_bytes());
    duid.extend_from_slice(&mac);
    push_option6(&mut message, OPTION6_CLIENTID, &duid);
    let oro: Vec<u8> = requested
        .iter()
        .flat_map(|code| code.to_be_bytes())
        .collect();
    push_option6(&mut message, OPTION6_ORO, &oro);
    push_option6(&mut message, OPTION6_ELAPSED_TIME, &0u16.to_be_bytes());
    message
}

fn push_option6(message: &mut Vec<u8>, code: u16, value: &[u8]) {
    message.extend_from_slice(&code.to_be_bytes());
    message.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    message.extend_from_slice(value);
}

/// The options of the Reply in `message` if it is one, for transaction `xid`.
fn parse_reply(message: &[u8], xid: u32) -> Option<BTreeMap<u16, Vec<u8>>> {
    let (&kind, rest) = message.split_first()?;
    if kind != REPLY || rest.get(..3)? != &xid.to_be_bytes()[1..] {
        return None;
    }
    let mut bytes = &rest[3..];
    let mut options = BTreeMap::new();
    while !bytes.is_empty() {
        let code = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
        let value = bytes.get(4..4 + len)?;
        options.insert(code, value.to_vec());
        bytes = &bytes[4 + len..];
    }
    Some(options)
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn mac_bytes(mac: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{mac:?} is not a MAC address"))?;
    ensure!(bytes.len() == 6, "{mac:?} is not a MAC address");
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&bytes);
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discover_asks_for_its_options_and_an_offer_is_read_back() {
        let mac = [2, 0, 0, 0, 0, 1];
        let discover = discover_message(7, mac, &[1, 3, 114]);
        assert_eq!(discover.len(), BOOTP_MIN_LEN);
        let options = dhcpv4_options(&discover[BOOTP_FIXED_LEN + 4..]).unwrap();
        assert_eq!(options[&OPTION_PARAMETER_REQUEST_LIST], [1, 3, 114]);

        // The server's answer: the same fixed part with op 2 and an address, an OFFER with
        // option 114 split over two occurrences (RFC 3396).
        let mut offer = discover[..BOOTP_FIXED_LEN].to_vec();
        offer[0] = 2;
        offer[16..20].copy_from_slice(&[192, 0, 2, 200]);
        offer.extend_from_slice(&MAGIC_COOKIE);
        offer.extend_from_slice(&[OPTION_MESSAGE_TYPE, 1, DHCPOFFER, OPTION_PAD]);
        offer.extend_from_slice(&[114, 3, b'a', b'b', b'c', 114, 1, b'd', OPTION_END]);
        let read = parse_offer(&offer, 7, mac).unwrap();
        assert_eq!(read.your_address, Ipv4Addr::new(192, 0, 2, 200));
        assert_eq!(read.options[&114], b"abcd");
        assert!(parse_offer(&offer, 8, mac).is_none(), "another transaction");
        offer.truncate(offer.len() - 3);
        offer.extend_from_slice(&[114, 9, b'd']);
        assert!(
            parse_offer(&offer, 7, mac).is_none(),
            "an option past the end"
        );
    }

    #[test]
    fn a_reply_is_read_by_its_transaction() {
        let request = information_request_message(0x00ab_cdef, [2, 0, 0, 0, 0, 1], &[103]);
        assert_eq!(request[..4], [INFORMATION_REQUEST, 0xab, 0xcd, 0xef]);
        let mut reply = vec![REPLY, 0xab, 0xcd, 0xef];
        push_option6(&mut reply, 103, b"http://[2001:db8::1]/");
        let options = parse_reply(&reply, 0x00ab_cdef).unwrap();
        assert_eq!(options[&103], b"http://[2001:db8::1]/");
        assert!(parse_reply(&reply, 0x00ab_cdee).is_none());
        assert_eq!(
            mac_bytes("02:0a:ff:00:01:10").unwrap(),
            [2, 10, 255, 0, 1, 16]
        );
    }
}
