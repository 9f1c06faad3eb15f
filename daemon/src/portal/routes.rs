//! The policy routes that deliver an unpaid client's steered web packets to the box's own
//! stack: the upload program marks them ([`PORTAL_MARK`]) and assigns a new connection to the
//! redirect listener, but a packet addressed to an internet address is forwarded unless a
//! route says it is local. One rule per family, "from the LAN interface, with the portal's
//! mark: look up table [`STEERING_TABLE`]", and that table's one route, "everything is local".
//! The rule names the LAN as input interface, so nothing the box sends itself (the portal's
//! answers carry the mark too) is routed by it. Side effects: adds the rules and routes,
//! replacing its own from an earlier run; [`remove`] takes them away (`hotspotd --release`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use hotspotd_common::PORTAL_MARK;
use rtnetlink::{
    Handle, IpVersion, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        route::{RouteScope, RouteType},
        rule::{RuleAction, RuleAttribute, RuleMessage},
    },
};

/// The routing table of the steered packets; an arbitrary number no distribution uses.
pub const STEERING_TABLE: u32 = 2_050;
/// The rules' priority: before the main table (32766), after the local one (0), and before
/// the rules multi-WAN setups add from 1000 on, which could otherwise send the packets out.
pub const STEERING_RULE_PRIORITY: u32 = 900;

#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("cannot open a routing netlink socket for the portal's policy routes")]
    Open(#[source] std::io::Error),
    #[error("cannot describe the portal's local route: {0}")]
    Route(String),
    #[error(
        "cannot {action} the policy routes that steer unpaid clients' web requests to the portal"
    )]
    Netlink {
        action: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
}

/// Routes packets marked [`PORTAL_MARK`] that arrive on `lan` to the box itself, IPv4 and
/// IPv6, replacing the rules an earlier run left.
pub async fn install(lan: &str) -> Result<(), RoutesError> {
    let handle = connect()?;
    let error = |source| RoutesError::Netlink {
        action: "add",
        source,
    };
    remove_rules(&handle).await?;
    let loopback = nix::net::if_::if_nametoindex("lo").unwrap_or(1);
    for everything in [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ] {
        let route = local_route(everything)?.output_interface(loopback).build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(error)?;
        let rule = handle
            .rule()
            .add()
            .input_interface(lan)
            .fw_mark(PORTAL_MARK)
            .table_id(STEERING_TABLE)
            .priority(STEERING_RULE_PRIORITY)
            .action(RuleAction::ToTable);
        match everything {
            IpAddr::V4(_) => rule.v4().execute().await,
            IpAddr::V6(_) => rule.v6().execute().await,
        }
        .map_err(error)?;
    }
    Ok(())
}

/// Removes the rules and the table's routes; returns whether there were any.
pub async fn remove() -> Result<bool, RoutesError> {
    let handle = connect()?;
    let found = remove_rules(&handle).await?;
    for destination in [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ] {
        let route = local_route(destination)?.build();
        // Absent already (never added, or removed by hand): nothing to do.
        let _ = handle.route().del(route).execute().await;
    }
    Ok(found)
}

/// Table [`STEERING_TABLE`]'s one route of the family of `everything` (an unspecified
/// address): every destination is the box's own.
fn local_route(everything: IpAddr) -> Result<RouteMessageBuilder<IpAddr>, RoutesError> {
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(everything, 0)
        .map_err(|invalid| RoutesError::Route(invalid.to_string()))?
        .table_id(STEERING_TABLE)
        .kind(RouteType::Local)
        .scope(RouteScope::Host))
}

fn connect() -> Result<Handle, RoutesError> {
    let (connection, handle, _messages) = rtnetlink::new_connection().map_err(RoutesError::Open)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Deletes every rule with the portal's mark and priority, of both families (the kernel keeps
/// duplicates of a rule, so each run's would pile up); returns whether there were any.
async fn remove_rules(handle: &Handle) -> Result<bool, RoutesError> {
    let error = |source| RoutesError::Netlink {
        action: "replace",
        source,
    };
    let mut ours: Vec<RuleMessage> = Vec::new();
    for version in [IpVersion::V4, IpVersion::V6] {
        let mut rules = handle.rule().get(version).execute();
        while let Some(rule) = rules.try_next().await.map_err(error)? {
            if is_ours(&rule) {
                ours.push(rule);
            }
        }
    }
    let found = !ours.is_empty();
    for rule in ours {
        handle.rule().del(rule).execute().await.map_err(error)?;
    }
    Ok(found)
}

fn is_ours(rule: &RuleMessage) -> bool {
    let family_ok = matches!(
        rule.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    );
    family_ok
        && rule
            .attributes
            .contains(&RuleAttribute::Priority(STEERING_RULE_PRIORITY))
        && rule
            .attributes
            .contains(&RuleAttribute::FwMark(PORTAL_MARK))
}
