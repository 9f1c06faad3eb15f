//! Whether a request comes from the LAN: its source address is in a network of the LAN
//! interface's addresses (IPv4 and IPv6, link-local included). The dashboard is for the
//! operator, never for a hotspot client, whatever it presents. Side effects: reads the
//! interfaces' addresses (getifaddrs).

use std::net::IpAddr;

/// Whether `peer` is on a network of `interface`. When the addresses cannot be read the
/// answer is yes: the dashboard is refused rather than opened to the LAN.
#[must_use]
pub fn is_on(interface: &str, peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    if peer.is_loopback() {
        return false;
    }
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return true;
    };
    addresses
        .filter(|entry| entry.interface_name == interface)
        .any(|entry| {
            let (Some(address), Some(mask)) = (entry.address, entry.netmask) else {
                return false;
            };
            match (peer, address.as_sockaddr_in(), mask.as_sockaddr_in()) {
                (IpAddr::V4(peer), Some(address), Some(mask)) => {
                    let mask = mask.ip().to_bits();
                    peer.to_bits() & mask == address.ip().to_bits() & mask
                }
                _ => match (peer, address.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                    (IpAddr::V6(peer), Some(address), Some(mask)) => {
                        let mask = mask.ip().to_bits();
                        peer.to_bits() & mask == address.ip().to_bits() & mask
                    }
                    _ => false,
                },
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_never_the_lan() {
        assert!(!is_on(
            "lo",
            "127.0.0.1".parse().unwrap_or(IpAddr::from([0; 4]))
        ));
        assert!(!is_on("lo", "::1".parse().unwrap_or(IpAddr::from([0; 4]))));
    }

    #[test]
    fn an_address_outside_the_interface_is_not_on_it() {
        // No interface has this name: nothing is on it.
        assert!(!is_on("no-such-if0", IpAddr::from([192, 0, 2, 10])));
    }
}
