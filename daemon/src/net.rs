//! Small conversions between std's network types and the kernel map types.

use std::net::IpAddr;

use hotspotd_common::IpKey;

/// The map key of an address: IPv4 as IPv4-mapped IPv6, as the eBPF programs build it.
#[must_use]
pub fn ip_key(addr: IpAddr) -> IpKey {
    match addr {
        IpAddr::V4(v4) => IpKey::from_v4(v4.octets()),
        IpAddr::V6(v6) => IpKey::from_v6(v6.octets()),
    }
}

/// The address a map key holds: IPv4-mapped keys are IPv4 addresses.
#[must_use]
pub fn ip_of_key(key: IpKey) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(key.addr);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_mapped_like_the_kernel_does() {
        let key = ip_key("192.0.2.1".parse().expect("valid"));
        assert_eq!(
            key.addr,
            "::ffff:192.0.2.1"
                .parse::<std::net::Ipv6Addr>()
                .expect("valid")
                .octets()
        );
        let v6 = "2001:db8::1".parse::<std::net::Ipv6Addr>().expect("valid");
        assert_eq!(ip_key(IpAddr::V6(v6)).addr, v6.octets());
    }
}
