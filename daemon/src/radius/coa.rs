//! The change-of-authorization listener (RFC 5176; `radius.coa_port`): Disconnect-Request ends
//! a RADIUS session, CoA-Request changes a running one. Only from the configured servers'
//! addresses, signed with the shared secret, with an Event-Timestamp within
//! [`EVENT_WINDOW_SECS`] of now and an authenticator not seen in that window (a replay is
//! dropped unanswered). The control task decides; this task checks and answers. Side effects:
//! a UDP socket on the port, answers to the servers.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
};

use super::{
    codec::{self, Attribute, Packet},
    dict,
};

/// How far a request's Event-Timestamp may be from the box's clock (RFC 5176 §3.6 suggests
/// 300 s).
pub const EVENT_WINDOW_SECS: i64 = 300;

/// What a server asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoaKind {
    Disconnect,
    Change,
}

/// A checked request for the control task; `reply` takes `Err(Error-Cause)` for a NAK.
#[derive(Debug)]
pub struct CoaRequest {
    pub kind: CoaKind,
    pub packet: Packet,
    pub reply: oneshot::Sender<Result<(), u32>>,
}

/// Why the listener cannot run.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for RADIUS CoA/Disconnect on UDP port {port}; set radius.coa_port to a free port, or 0 for none"
)]
pub struct ListenError {
    port: u16,
    source: std::io::Error,
}

/// Binds the port and serves it until the control task is gone.
pub async fn listen(
    port: u16,
    servers: Vec<String>,
    secret: Vec<u8>,
    to_control: mpsc::UnboundedSender<CoaRequest>,
) -> Result<(), ListenError> {
    let socket = UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
        .await
        .or(UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await)
        .map_err(|source| ListenError { port, source })?;
    let mut allowed = Vec::new();
    for server in &servers {
        match tokio::net::lookup_host(server).await {
            Ok(addresses) => allowed.extend(addresses.map(|address| canonical(address.ip()))),
            Err(error) => {
                tracing::warn!(server, %error, "a RADIUS server's name does not resolve: its CoA requests are refused");
            }
        }
    }
    let mut seen: HashMap<[u8; 16], Instant> = HashMap::new();
    let mut buffer = vec![0; codec::MAX_PACKET_LEN];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let bytes = buffer[..len].to_vec();
        let Some(request) = check(&bytes, from, &allowed, &secret, &mut seen) else {
            continue;
        };
        let (reply, answer) = oneshot::channel();
        let identifier = request.identifier;
        let authenticator = request.authenticator;
        let kind = if request.code == dict::DISCONNECT_REQUEST {
            CoaKind::Disconnect
        } else {
            CoaKind::Change
        };
        if to_control
            .send(CoaRequest {
                kind,
                packet: request,
                reply,
            })
            .is_err()
        {
            return Ok(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(Err(dict::ERROR_RESOURCES_UNAVAILABLE));
        let (code, attributes) = match (kind, result) {
            (CoaKind::Disconnect, Ok(())) => (dict::DISCONNECT_ACK, vec![]),
            (CoaKind::Change, Ok(())) => (dict::COA_ACK, vec![]),
            (CoaKind::Disconnect, Err(cause)) => (
                dict::DISCONNECT_NAK,
                vec![Attribute::integer(dict::ERROR_CAUSE, cause)],
            ),
            (CoaKind::Change, Err(cause)) => (
                dict::COA_NAK,
                vec![Attribute::integer(dict::ERROR_CAUSE, cause)],
            ),
        };
        let response = Packet {
            code,
            identifier,
            authenticator: [0; 16],
            attributes,
        };
        if let Ok(bytes) = codec::encode_response(response, &authenticator, &secret) {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}

/// An IPv4 address as itself, not as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The request in `bytes` if it passes every check; what fails is logged.
fn check(
    bytes: &[u8],
    from: SocketAddr,
    allowed: &[IpAddr],
    secret: &[u8],
    seen: &mut HashMap<[u8; 16], Instant>,
) -> Option<Packet> {
    let source = canonical(from.ip());
    if !allowed.contains(&source) {
        tracing::warn!(%from, "a CoA/Disconnect request from an address that is no configured RADIUS server was dropped");
        return None;
    }
    let packet = match codec::verify_request(bytes, secret, false) {
        Ok(packet) => packet,
        Err(error) => {
            tracing::warn!(%from, error = %crate::text::chain(&error), "a CoA/Disconnect request was dropped");
            return None;
        }
    };
    if !matches!(packet.code, dict::DISCONNECT_REQUEST | dict::COA_REQUEST) {
        tracing::warn!(%from, code = packet.code, "a packet that is no CoA/Disconnect request was dropped");
        return None;
    }
    let now = chrono::Utc::now().timestamp();
    let Some(at) = packet.integer(dict::EVENT_TIMESTAMP) else {
        tracing::warn!(%from, "a CoA/Disconnect request without Event-Timestamp was dropped: replays could not be told apart");
        return None;
    };
    if (now - i64::from(at)).abs() > EVENT_WINDOW_SECS {
        tracing::warn!(%from, event_timestamp = at, now, "a CoA/Disconnect request outside the time window was dropped (a replay, or the clocks differ: run NTP on both)");
        return None;
    }
    let window = Duration::from_secs(EVENT_WINDOW_SECS.unsigned_abs() * 2);
    seen.retain(|_, when| when.elapsed() < window);
    if seen.insert(packet.authenticator, Instant::now()).is_some() {
        tracing::warn!(%from, "a CoA/Disconnect request seen before was dropped (a replay)");
        return None;
    }
    Some(packet)
}
