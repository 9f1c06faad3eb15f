//! A simulated hotspot: a gateway namespace whose LAN bridge connects client namespaces over
//! veth pairs, and an "internet" namespace behind the gateway's WAN so client traffic is
//! really routed through it. Only documentation address ranges are used; all traffic stays
//! between these namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::netns::{Netns, unique_id};
use crate::traffic::{UdpEcho, udp_probe};
use crate::wait_for;

/// The bridge in the gateway namespace that the clients' veth peers are enslaved to.
pub const LAN_IFACE: &str = "br-lan";
/// The gateway's end of the veth pair to the internet namespace.
pub const WAN_IFACE: &str = "wan0";
/// The interface inside each client namespace.
pub const CLIENT_IFACE: &str = "eth0";
/// The interface inside the internet namespace.
pub const INTERNET_IFACE: &str = "eth0";

pub const GATEWAY_LAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const GATEWAY_LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const LAN_PREFIX_V4: u8 = 24;
pub const LAN_PREFIX_V6: u8 = 64;

pub const GATEWAY_WAN_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
pub const GATEWAY_WAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0xfe);
pub const INTERNET_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const INTERNET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
pub const WAN_PREFIX_V4: u8 = 24;
pub const WAN_PREFIX_V6: u8 = 64;

/// Clients get 192.0.2.10 upwards; this keeps them inside the /24 and their index in one
/// MAC byte.
pub const MAX_CLIENTS: usize = 200;

/// First host number of client addresses (v4 last octet, v6 last group).
const CLIENT_HOST_BASE: u8 = 10;

/// How long [`Lan::new`] waits for every path to carry traffic.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// One simulated client device.
#[derive(Debug)]
pub struct Client {
    pub netns: Netns,
    /// Lower case, `aa:bb:cc:dd:ee:ff`; the key the daemon counts this client under.
    pub mac: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The gateway-side end of this client's veth, a port of [`LAN_IFACE`].
    pub port: String,
}

/// A gateway, its clients and the internet behind it; every namespace is deleted on drop.
#[derive(Debug)]
pub struct Lan {
    pub gateway: Netns,
    pub internet: Netns,
    pub clients: Vec<Client>,
    bridge_mac: String,
}

impl Lan {
    /// Builds a LAN with `clients` clients and returns once IPv4 and IPv6 are usable on every
    /// path: each client has reached the gateway and the internet over both families.
    pub fn new(clients: usize) -> Result<Lan> {
        ensure!(
            clients <= MAX_CLIENTS,
            "Lan::new: at most {MAX_CLIENTS} clients (asked for {clients})"
        );
        ensure!(
            nix::unistd::geteuid().is_root(),
            "hotspotd-tests must run as root: it creates network namespaces, veths and bridges"
        );
        // Best effort: a failure to clean up a crashed run must not fail this one.
        let _ = Netns::remove_stale();

        let (pid, seq) = unique_id();
        let base = format!("hs-{pid}-{seq}");
        // MACs carry the pid (low 16 bits) and sequence number (low byte), so LANs alive at
        // the same time, in this process or another, have different client MACs and a
        // counter credited to the wrong LAN's client shows up.
        let [_, _, pid_hi, pid_lo] = pid.to_be_bytes();
        let seq_byte = seq.to_be_bytes()[7];
        let mac = |kind: u8, index: u8| {
            format!("02:{kind:02x}:{pid_hi:02x}:{pid_lo:02x}:{seq_byte:02x}:{index:02x}")
        };

        // Each namespace is owned as soon as it exists, so an error below deletes what was
        // built so far.
        let gateway = Netns::create(&format!("{base}-gw"))?;
        let internet = Netns::create(&format!("{base}-inet"))?;
        let mut client_list = Vec::with_capacity(clients);
        for index in 0..clients {
            let host = u8::try_from(index)
                .ok()
                .and_then(|i| i.checked_add(CLIENT_HOST_BASE))
                .context("client index out of range")?;
            client_list.push(Client {
                netns: Netns::create(&format!("{base}-c{index}"))?,
                mac: mac(0, host),
                ipv4: Ipv4Addr::new(192, 0, 2, host),
                ipv6: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(host)),
                port: format!("lan{index}"),
            });
        }
        let lan = Lan {
            gateway,
            internet,
            clients: client_list,
            bridge_mac: mac(1, 1),
        };
        lan.configure()
            .with_context(|| format!("set up LAN {base}"))?;
        lan.wait_until_ready()
            .with_context(|| format!("LAN {base} does not carry traffic"))?;
        Ok(lan)
    }

    /// The MAC address of [`LAN_IFACE`] (set explicitly, so it is known before traffic).
    #[must_use]
    pub fn bridge_mac(&self) -> &str {
        &self.bridge_mac
    }

    /// The namespaces of this LAN: gateway, internet, then clients in order.
    pub fn namespaces(&self) -> impl Iterator<Item = &Netns> {
        [&self.gateway, &self.internet]
            .into_iter()
            .chain(self.clients.iter().map(|c| &c.netns))
    }

    /// Replaces ARP and neighbour discovery between the clients and the gateway with
    /// permanent entries, for tests that count bytes exactly and must not see ARP/ND probes
    /// when a neighbour entry goes stale mid-test.
    pub fn pin_neighbors(&self) -> Result<()> {
        let mut gateway_lines = Vec::new();
        for client in &self.clients {
            let lines = [IpAddr::from(GATEWAY_LAN_V4), IpAddr::from(GATEWAY_LAN_V6)].map(|ip| {
                format!(
                    "neigh replace {ip} lladdr {} dev {CLIENT_IFACE} nud permanent",
                    self.bridge_mac
                )
            });
            client.netns.ip_batch(&lines)?;
            for ip in [IpAddr::V4(client.ipv4), IpAddr::V6(client.ipv6)] {
                gateway_lines.push(format!(
                    "neigh replace {ip} lladdr {} dev {LAN_IFACE} nud permanent",
                    client.mac
                ));
            }
        }
        if !gateway_lines.is_empty() {
            self.gateway.ip_batch(&gateway_lines)?;
        }
        Ok(())
    }

    /// Builds the LAN bridge again after a test deleted it: same name, MAC and addresses,
    /// with every client's port back in it, as a network manager restarting the LAN would.
    pub fn restore_bridge(&self) -> Result<()> {
        let mut lines = self.bridge_lines();
        for client in &self.clients {
            lines.push(format!("link set {} master {LAN_IFACE} up", client.port));
        }
        self.gateway.ip_batch(&lines)
    }

    /// `ip -batch` lines that create the LAN bridge with its MAC and addresses, up.
    fn bridge_lines(&self) -> Vec<String> {
        vec![
            // No STP and no forward delay: ports forward as soon as they are up. No multicast
            // snooping: without an MLD querier on the LAN it would only delay ND.
            format!(
                "link add name {LAN_IFACE} address {} type bridge {}",
                self.bridge_mac, "stp_state 0 forward_delay 0 mcast_snooping 0"
            ),
            format!("addr add {GATEWAY_LAN_V4}/{LAN_PREFIX_V4} dev {LAN_IFACE}"),
            format!("addr add {GATEWAY_LAN_V6}/{LAN_PREFIX_V6} dev {LAN_IFACE} nodad"),
            format!("link set {LAN_IFACE} up"),
        ]
    }

    fn configure(&self) -> Result<()> {
        for ns in self.namespaces() {
            // Set before any interface exists: new interfaces copy `default`.
            ns.sysctl(&[
                // No duplicate address detection: addresses are usable at once, no waiting
                // for tentative addresses to settle.
                ("net/ipv6/conf/all/accept_dad", "0"),
                ("net/ipv6/conf/default/accept_dad", "0"),
                // No router solicitations: nobody answers them, and they would be counted as
                // client traffic.
                ("net/ipv6/conf/default/router_solicitations", "0"),
                // Unsolicited MLD reports after link-up are repeated after up to 1 s by
                // default; 10 ms gets them out before Lan::new returns instead of into a
                // test's byte counts.
                (
                    "net/ipv6/conf/default/mldv1_unsolicited_report_interval",
                    "10",
                ),
                (
                    "net/ipv6/conf/default/mldv2_unsolicited_report_interval",
                    "10",
                ),
            ])?;
        }
        self.gateway.sysctl(&[
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv6/conf/all/forwarding", "1"),
        ])?;

        let mut gateway = vec!["link set lo up".to_owned()];
        gateway.extend(self.bridge_lines());
        gateway.extend([
            format!(
                "link add name {WAN_IFACE} type veth peer name {INTERNET_IFACE} netns {}",
                self.internet.name()
            ),
            format!("addr add {GATEWAY_WAN_V4}/{WAN_PREFIX_V4} dev {WAN_IFACE}"),
            format!("addr add {GATEWAY_WAN_V6}/{WAN_PREFIX_V6} dev {WAN_IFACE} nodad"),
            format!("link set {WAN_IFACE} up"),
        ]);
        for client in &self.clients {
            let port = &client.port;
            gateway.push(format!(
                "link add name {port} type veth peer name {CLIENT_IFACE} address {} netns {}",
                client.mac,
                client.netns.name()
            ));
            // A bridge port needs no addresses of its own; without a link-local address it
            // sends no MLD reports into the client.
            gateway.push(format!("link set {port} addrgenmode none"));
            gateway.push(format!("link set {port} master {LAN_IFACE} up"));
        }
        self.gateway.ip_batch(&gateway)?;

        self.internet.ip_batch(&[
            "link set lo up".to_owned(),
            format!("addr add {INTERNET_V4}/{WAN_PREFIX_V4} dev {INTERNET_IFACE}"),
            format!("addr add {INTERNET_V6}/{WAN_PREFIX_V6} dev {INTERNET_IFACE} nodad"),
            format!("link set {INTERNET_IFACE} up"),
            format!("route add 192.0.2.0/{LAN_PREFIX_V4} via {GATEWAY_WAN_V4}"),
            format!("route add 2001:db8:1::/{LAN_PREFIX_V6} via {GATEWAY_WAN_V6}"),
        ])?;

        for client in &self.clients {
            client.netns.ip_batch(&[
                "link set lo up".to_owned(),
                format!(
                    "addr add {}/{LAN_PREFIX_V4} dev {CLIENT_IFACE}",
                    client.ipv4
                ),
                format!(
                    "addr add {}/{LAN_PREFIX_V6} dev {CLIENT_IFACE} nodad",
                    client.ipv6
                ),
                format!("link set {CLIENT_IFACE} up"),
                format!("route add default via {GATEWAY_LAN_V4}"),
                // `::/0` rather than `default`: ip cannot tell the family from `default`.
                format!("route add ::/0 via {GATEWAY_LAN_V6}"),
            ])?;
        }
        Ok(())
    }

    /// Waits until no address is tentative, then proves every path with a UDP round trip:
    /// each client to the gateway (local service) and to the internet (forwarded), both
    /// families. Also leaves the neighbour caches filled.
    fn wait_until_ready(&self) -> Result<()> {
        for ns in self.namespaces() {
            let settled = wait_for(READY_TIMEOUT, || {
                ns.ip(&["-6", "addr", "show", "tentative"])
                    .is_ok_and(|out| out.trim().is_empty())
            });
            ensure!(settled, "IPv6 addresses in {} stay tentative", ns.name());
        }

        let any_port = |ip: IpAddr| SocketAddr::new(ip, 0);
        let echoes = [
            UdpEcho::start(&self.gateway, any_port(GATEWAY_LAN_V4.into()))?,
            UdpEcho::start(&self.gateway, any_port(GATEWAY_LAN_V6.into()))?,
            UdpEcho::start(&self.internet, any_port(INTERNET_V4.into()))?,
            UdpEcho::start(&self.internet, any_port(INTERNET_V6.into()))?,
        ];
        for client in &self.clients {
            for echo in &echoes {
                let target = echo.addr();
                let mut last_error = None;
                // Retried: the first datagram may be lost while ARP/ND resolve or a bridge
                // port comes up.
                let reached = wait_for(READY_TIMEOUT, || {
                    match udp_probe(&client.netns, target, Duration::from_millis(200)) {
                        Ok(()) => true,
                        Err(e) => {
                            last_error = Some(e);
                            false
                        }
                    }
                });
                if !reached {
                    match last_error {
                        Some(e) => {
                            return Err(e.context(format!(
                                "client {} cannot reach {target}",
                                client.netns.name()
                            )));
                        }
                        None => bail!("client {} cannot reach {target}", client.netns.name()),
                    }
                }
            }
        }
        Ok(())
    }
}
