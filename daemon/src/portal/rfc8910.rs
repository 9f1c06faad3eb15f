//! RFC 8910: the URI of the RFC 8908 captive-portal API that DHCPv4 (option 114), DHCPv6
//! (option 103) and IPv6 router advertisements (option 37) hand to phones, derived from the
//! running configuration, and the lines that make dnsmasq, `odhcpd` (OpenWrt) or radvd send it.
//! hotspotd runs no DHCP or RA server itself: `GET /v1/portal/dhcp-options` and
//! `hotspotctl portal dhcp-options` print these lines for the operator's. Pure: the caller
//! reads the LAN interface's addresses.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};

use crate::config::{PortalConfig, PortalMode};

/// Where the built-in portal serves the RFC 8908 API.
pub const API_PATH: &str = "/api/captive";

/// The default `https` port, which RFC 8908 (section 4) asks the API to use, left out of URIs.
const HTTPS_DEFAULT_PORT: u16 = 443;

/// Whose configuration to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `dhcp-option` lines for dnsmasq (DHCPv4 and DHCPv6; it cannot send RA option 37).
    #[default]
    Dnsmasq,
    /// `uci` commands for OpenWrt: `odhcpd`'s `captive_portal_uri` (DHCPv6, RA and, where it
    /// serves it, DHCPv4) and dnsmasq's option 114 (which serves DHCPv4 on a stock OpenWrt).
    Odhcpd,
    /// radvd's `AdvCaptivePortalAPI` (RA option 37; radvd 2.20 and later).
    Radvd,
    /// One line per option: its name and the URI, for any other server.
    Raw,
}

impl Format {
    /// The names `?format=` takes, as serde spells them.
    pub const NAMES: &[&str] = &["dnsmasq", "odhcpd", "radvd", "raw"];
}

/// The API's URI as each family's options carry it. A name (`portal.hostname`,
/// `portal.api_url`) is the same in both; a derived one names the LAN address of its family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUris {
    /// What DHCPv4 option 114 carries; `None` when the LAN interface has no IPv4 address.
    pub ipv4: Option<String>,
    /// What DHCPv6 option 103 and RA option 37 carry; `None` when the LAN interface has no
    /// global IPv6 address.
    pub ipv6: Option<String>,
}

/// Why there is no URI to give phones: each says what to set.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoApiUri {
    #[error(
        "portal.mode is \"off\": there is no portal, so no captive-portal API to point phones at; set portal.mode = \"builtin\" (or \"external\" with portal.api_url) first"
    )]
    Off,
    #[error(
        "portal.mode is \"external\" and portal.api_url is empty: set portal.api_url to the RFC 8908 API URI of your portal (https://…, at most 255 bytes)"
    )]
    ExternalWithoutApiUrl,
    #[error(
        "the portal serves HTTPS (portal.tls_cert and portal.tls_key are set) but portal.hostname is empty: set it to the host name the certificate covers, which the LAN's resolver answers with the box's LAN address"
    )]
    HttpsWithoutHostname,
    #[error(
        "{interface} has no IPv4 address and no global IPv6 address to put in the URI: give it one, or set portal.hostname"
    )]
    NoAddress { interface: String },
}

/// The API's URI from the configuration and the LAN interface's `addresses` (in the kernel's
/// order; only global ones: see `Netlink::portal_addresses`). `portal.api_url` wins; else the
/// built-in portal's API over HTTPS at `portal.hostname` when it serves HTTPS, else over HTTP
/// at `portal.hostname` or at the first address of each family.
pub fn api_uris(
    portal: &PortalConfig,
    interface: &str,
    addresses: &[IpAddr],
) -> Result<ApiUris, NoApiUri> {
    let both = |uri: String| ApiUris {
        ipv4: Some(uri.clone()),
        ipv6: Some(uri),
    };
    if portal.mode == PortalMode::Off {
        return Err(NoApiUri::Off);
    }
    if !portal.api_url.is_empty() {
        return Ok(both(portal.api_url.clone()));
    }
    if portal.mode == PortalMode::External {
        return Err(NoApiUri::ExternalWithoutApiUrl);
    }
    if portal.tls_enabled() {
        let port = portal.tls_port;
        if portal.hostname.is_empty() {
            return Err(NoApiUri::HttpsWithoutHostname);
        }
        let authority = if port == HTTPS_DEFAULT_PORT {
            portal.hostname.clone()
        } else {
            format!("{}:{port}", portal.hostname)
        };
        return Ok(both(format!("https://{authority}{API_PATH}")));
    }
    if !portal.hostname.is_empty() {
        return Ok(both(format!(
            "http://{}:{}{API_PATH}",
            portal.hostname, portal.listen_port
        )));
    }
    // `SocketAddr` writes an IPv6 address in brackets, as a URI needs.
    let uri = |address: &IpAddr| {
        format!(
            "http://{}{API_PATH}",
            SocketAddr::new(*address, portal.listen_port)
        )
    };
    let uris = ApiUris {
        ipv4: addresses.iter().find(|a| a.is_ipv4()).map(uri),
        ipv6: addresses.iter().find(|a| a.is_ipv6()).map(uri),
    };
    if uris.ipv4.is_none() && uris.ipv6.is_none() {
        return Err(NoApiUri::NoAddress {
            interface: interface.to_owned(),
        });
    }
    Ok(uris)
}

/// The configuration lines for `format`, ready to paste, each limit said in a comment.
#[must_use]
pub fn render(format: Format, uris: &ApiUris, interface: &str) -> String {
    match format {
        Format::Dnsmasq => dnsmasq(uris, interface),
        Format::Odhcpd => odhcpd(uris, interface),
        Format::Radvd => radvd(uris, interface),
        Format::Raw => raw(uris),
    }
}

/// What to tell the operator about a family the LAN interface has no address of.
fn missing(interface: &str, family: &str) -> String {
    format!(
        "# {interface} has no {family} address to put in a URI: give it one (for IPv6 a global or\n\
         # ULA address; a link-local one cannot be reached by URI), or set portal.hostname.\n"
    )
}

/// A note when the URIs name the box by address: RFC 8910 (section 2) says they should not,
/// and RFC 8908 (section 4) says the API is reached over HTTPS, which phones check against
/// the name.
fn address_note(uris: &ApiUris) -> &'static str {
    let by_address = [&uris.ipv4, &uris.ipv6]
        .into_iter()
        .flatten()
        .any(|uri| uri.starts_with("http://") && literal_host(uri));
    if by_address {
        "# The URI names the box by address over plain HTTP: enough for labs and tests, but\n\
         # RFC 8908 asks for https:// with a name the certificate covers (a phone may ignore\n\
         # anything else): set portal.tls_cert, portal.tls_key and portal.hostname.\n"
    } else {
        ""
    }
}

/// Whether `uri`'s host is an IP address literal.
fn literal_host(uri: &str) -> bool {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.starts_with('[') || authority.parse::<SocketAddr>().is_ok()
}

fn dnsmasq(uris: &ApiUris, interface: &str) -> String {
    let mut text = format!(
        "# RFC 8910 for dnsmasq, from hotspotd's running configuration: tells phones on\n\
         # {interface} where the captive-portal API (RFC 8908) is. Put these lines in a file\n\
         # dnsmasq reads (Debian: /etc/dnsmasq.d/hotspotd-captive.conf) and restart dnsmasq. It\n\
         # sends each option to the phones that ask for it, as those that know RFC 8910 do.\n"
    );
    text.push_str(address_note(uris));
    text.push_str("# DHCPv4 option 114:\n");
    if let Some(uri) = &uris.ipv4 {
        let _ = writeln!(text, "dhcp-option=tag:{interface},114,\"{uri}\"");
    } else {
        text.push_str(&missing(interface, "IPv4"));
    }
    if let Some(uri) = &uris.ipv6 {
        text.push_str(
            "# DHCPv6 option 103 (where dnsmasq serves DHCPv6: a dhcp-range with an IPv6 prefix):\n",
        );
        let _ = writeln!(text, "dhcp-option=tag:{interface},option6:103,\"{uri}\"");
        text.push_str(
            "# RA option 37: dnsmasq cannot send it (its router advertisements, --enable-ra,\n\
             # carry no captive-portal option). Send router advertisements with radvd 2.20 or\n\
             # later ('hotspotctl portal dhcp-options --format radvd') or odhcpd instead.\n",
        );
    } else {
        text.push_str("# DHCPv6 option 103 and RA option 37:\n");
        text.push_str(&missing(interface, "global IPv6"));
    }
    text
}

fn odhcpd(uris: &ApiUris, interface: &str) -> String {
    let mut text = format!(
        "# RFC 8910 for OpenWrt, from hotspotd's running configuration: tells phones on\n\
         # {interface} where the captive-portal API (RFC 8908) is. Run these lines on the router.\n\
         # 'lan' is the DHCP section of the network on {interface}, as on a stock OpenWrt\n\
         # ('uci show dhcp' lists the sections; use the hotspot's).\n"
    );
    text.push_str(address_note(uris));
    // odhcpd sends one URI in all three options. On a stock OpenWrt it serves DHCPv6 and RA
    // and dnsmasq serves DHCPv4, so it gets the IPv6 one when there is one.
    if let Some(uri) = uris.ipv6.as_ref().or(uris.ipv4.as_ref()) {
        text.push_str(
            "# odhcpd (November 2025 and later) sends this URI in DHCPv6 option 103, RA option 37\n\
             # and, where odhcpd serves DHCPv4, option 114. An older odhcpd ignores it:\n\
             # 'grep -c captive_portal_uri /usr/sbin/odhcpd' prints 0 there.\n",
        );
        let _ = writeln!(text, "uci set dhcp.lan.captive_portal_uri='{uri}'");
    }
    if uris.ipv6.is_none() {
        text.push_str("# DHCPv6 option 103 and RA option 37:\n");
        text.push_str(&missing(interface, "global IPv6"));
    }
    if let Some(uri) = &uris.ipv4 {
        text.push_str(
            "# dnsmasq serves DHCPv4 on a stock OpenWrt: option 114 (the first line drops an\n\
             # earlier copy, so running this twice adds it once).\n",
        );
        let option = format!("114,\"{uri}\"");
        let _ = writeln!(text, "uci -q del_list dhcp.lan.dhcp_option='{option}'");
        let _ = writeln!(text, "uci add_list dhcp.lan.dhcp_option='{option}'");
    } else {
        text.push_str("# DHCPv4 option 114:\n");
        text.push_str(&missing(interface, "IPv4"));
    }
    text.push_str("uci commit dhcp\n/etc/init.d/odhcpd restart\n/etc/init.d/dnsmasq restart\n");
    text
}

fn radvd(uris: &ApiUris, interface: &str) -> String {
    let mut text = format!(
        "# RFC 8910 for radvd, from hotspotd's running configuration: RA option 37 tells phones\n\
         # on {interface} where the captive-portal API (RFC 8908) is. radvd 2.20 or later (2.19,\n\
         # Debian 12's, refuses the keyword): put the line inside the 'interface {interface} {{ }};'\n\
         # block of /etc/radvd.conf and restart radvd. DHCPv4 and DHCPv6 need their own server's\n\
         # lines ('--format dnsmasq').\n"
    );
    text.push_str(address_note(uris));
    match &uris.ipv6 {
        Some(uri) => {
            let _ = writeln!(text, "AdvCaptivePortalAPI \"{uri}\";");
        }
        None => text.push_str(&missing(interface, "global IPv6")),
    }
    text
}

/// `dhcpv4-option-114 URI`, `dhcpv6-option-103 URI`, `ra-option-37 URI`: the options there
/// is a URI for, one a line.
fn raw(uris: &ApiUris) -> String {
    let mut text = String::new();
    if let Some(uri) = &uris.ipv4 {
        let _ = writeln!(text, "dhcpv4-option-114 {uri}");
    }
    if let Some(uri) = &uris.ipv6 {
        let _ = writeln!(text, "dhcpv6-option-103 {uri}");
        let _ = writeln!(text, "ra-option-37 {uri}");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn builtin() -> PortalConfig {
        PortalConfig::default()
    }

    fn lan() -> Vec<IpAddr> {
        vec![
            "192.0.2.1".parse().expect("valid"),
            "2001:db8:1::1".parse().expect("valid"),
            "192.0.2.99".parse().expect("valid"),
        ]
    }

    #[test]
    fn the_builtin_portal_is_named_by_the_first_address_of_each_family() {
        let uris = api_uris(&builtin(), "br-lan", &lan()).expect("a URI");
        assert_eq!(
            uris.ipv4.as_deref(),
            Some("http://192.0.2.1:2050/api/captive")
        );
        assert_eq!(
            uris.ipv6.as_deref(),
            Some("http://[2001:db8:1::1]:2050/api/captive")
        );
        let v4_only = api_uris(&builtin(), "br-lan", &lan()[..1]).expect("a URI");
        assert_eq!(v4_only.ipv6, None);
        assert_eq!(
            api_uris(&builtin(), "br-lan", &[]),
            Err(NoApiUri::NoAddress {
                interface: "br-lan".to_owned()
            })
        );
    }

    #[test]
    fn a_host_name_names_both_families_and_https_needs_one() {
        let named = PortalConfig {
            hostname: "portal.example.net".to_owned(),
            listen_port: 8080,
            ..builtin()
        };
        let uris = api_uris(&named, "br-lan", &[]).expect("a URI");
        assert_eq!(
            uris.ipv4.as_deref(),
            Some("http://portal.example.net:8080/api/captive")
        );
        assert_eq!(uris.ipv4, uris.ipv6);

        let tls = PortalConfig {
            tls_cert: PathBuf::from("/etc/hotspotd/cert.pem"),
            tls_key: PathBuf::from("/etc/hotspotd/key.pem"),
            ..named
        };
        let uris = api_uris(&tls, "br-lan", &lan()).expect("a URI");
        assert_eq!(
            uris.ipv6.as_deref(),
            Some("https://portal.example.net/api/captive")
        );
        let other_port = PortalConfig {
            tls_port: 8443,
            ..tls.clone()
        };
        assert_eq!(
            api_uris(&other_port, "br-lan", &lan())
                .expect("a URI")
                .ipv4
                .as_deref(),
            Some("https://portal.example.net:8443/api/captive")
        );
        let unnamed = PortalConfig {
            hostname: String::new(),
            ..tls
        };
        assert_eq!(
            api_uris(&unnamed, "br-lan", &lan()),
            Err(NoApiUri::HttpsWithoutHostname)
        );
    }

    #[test]
    fn the_operators_uri_wins_and_external_needs_one_and_off_has_none() {
        let given = PortalConfig {
            api_url: "https://portal.example.net/capport".to_owned(),
            ..builtin()
        };
        let uris = api_uris(&given, "br-lan", &lan()).expect("a URI");
        assert_eq!(
            uris.ipv4.as_deref(),
            Some("https://portal.example.net/capport")
        );
        assert_eq!(uris.ipv4, uris.ipv6);
        let external = PortalConfig {
            mode: PortalMode::External,
            url: "https://portal.example.net/".to_owned(),
            ..builtin()
        };
        assert_eq!(
            api_uris(&external, "br-lan", &lan()),
            Err(NoApiUri::ExternalWithoutApiUrl)
        );
        let external = PortalConfig {
            api_url: given.api_url.clone(),
            ..external
        };
        assert_eq!(api_uris(&external, "br-lan", &lan()), Ok(uris));
        let off = PortalConfig {
            mode: PortalMode::Off,
            ..given
        };
        assert_eq!(api_uris(&off, "br-lan", &lan()), Err(NoApiUri::Off));
        assert!(NoApiUri::Off.to_string().contains("portal.mode"));
    }

    fn lab() -> ApiUris {
        api_uris(&builtin(), "br-lan", &lan()).expect("a URI")
    }

    #[test]
    fn dnsmasq_gets_both_dhcp_options_and_is_told_it_cannot_send_the_ra_one() {
        let text = render(Format::Dnsmasq, &lab(), "br-lan");
        let lines: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "dhcp-option=tag:br-lan,114,\"http://192.0.2.1:2050/api/captive\"",
                "dhcp-option=tag:br-lan,option6:103,\"http://[2001:db8:1::1]:2050/api/captive\"",
            ]
        );
        assert!(text.contains("dnsmasq cannot send it"), "{text}");
        assert!(text.contains("RFC 8908 asks for https://"), "{text}");
        let v4_only = ApiUris {
            ipv6: None,
            ..lab()
        };
        let text = render(Format::Dnsmasq, &v4_only, "br-lan");
        assert!(!text.contains("option6:103"), "{text}");
        assert!(text.contains("br-lan has no global IPv6 address"), "{text}");
    }

    #[test]
    fn odhcpd_gets_uci_commands_with_one_uri_and_dnsmasqs_option_114() {
        let text = render(Format::Odhcpd, &lab(), "br-lan");
        let lines: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "uci set dhcp.lan.captive_portal_uri='http://[2001:db8:1::1]:2050/api/captive'",
                "uci -q del_list dhcp.lan.dhcp_option='114,\"http://192.0.2.1:2050/api/captive\"'",
                "uci add_list dhcp.lan.dhcp_option='114,\"http://192.0.2.1:2050/api/captive\"'",
                "uci commit dhcp",
                "/etc/init.d/odhcpd restart",
                "/etc/init.d/dnsmasq restart",
            ]
        );
    }

    #[test]
    fn radvd_and_raw_carry_the_uris_as_they_are() {
        let named = ApiUris {
            ipv4: Some("https://portal.example.net/api/captive".to_owned()),
            ipv6: Some("https://portal.example.net/api/captive".to_owned()),
        };
        let text = render(Format::Radvd, &named, "br-lan");
        let lines: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            lines,
            ["AdvCaptivePortalAPI \"https://portal.example.net/api/captive\";"]
        );
        assert!(!text.contains("names the box by address"), "{text}");
        assert_eq!(
            render(Format::Raw, &lab(), "br-lan"),
            "dhcpv4-option-114 http://192.0.2.1:2050/api/captive\n\
             dhcpv6-option-103 http://[2001:db8:1::1]:2050/api/captive\n\
             ra-option-37 http://[2001:db8:1::1]:2050/api/captive\n"
        );
    }
}
