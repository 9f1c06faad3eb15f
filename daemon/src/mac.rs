//! A client's MAC address: parsed from what operators type (`aa:bb:cc:dd:ee:ff`, any case,
//! `-` separators accepted), shown and serialised in lower case with colons.

use std::{fmt, str::FromStr};

use hotspotd_common::MacKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "'{input}' is not a MAC address: write six hex pairs separated by ':' or '-', like aa:bb:cc:dd:ee:ff"
)]
pub struct ParseMacError {
    pub input: String,
}

impl MacAddr {
    #[must_use]
    pub const fn key(self) -> MacKey {
        MacKey::new(self.0)
    }

    /// Whether this is a group (multicast or broadcast) address: the lowest bit of the first
    /// octet is set.
    #[must_use]
    pub const fn is_group(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether a device can send from this address: not a group (multicast or broadcast)
    /// address, whose lowest bit of the first octet is set, and not all zeros. The gate drops
    /// every frame from a group address, so a session sold to one could never be used.
    #[must_use]
    pub const fn is_station(self) -> bool {
        self.0[0] & 1 == 0 && !matches!(self.0, [0, 0, 0, 0, 0, 0])
    }
}

impl From<MacKey> for MacAddr {
    fn from(key: MacKey) -> Self {
        Self(key.addr)
    }
}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || ParseMacError {
            input: input.to_owned(),
        };
        let separator = if input.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = input.split(separator);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(error)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| error())?;
        }
        if parts.next().is_some() {
            return Err(error());
        }
        Ok(Self(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let octets = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            octets[0], octets[1], octets[2], octets[3], octets[4], octets[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_colons_dashes_and_any_case() {
        let expected = MacAddr([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]);
        for text in [
            "aa:bb:cc:0d:ee:ff",
            "AA:BB:CC:0D:EE:FF",
            "aa-bb-cc-0d-ee-ff",
            "Aa-bB-cc-0D-ee-FF",
        ] {
            assert_eq!(text.parse::<MacAddr>(), Ok(expected), "{text}");
        }
        assert_eq!(expected.to_string(), "aa:bb:cc:0d:ee:ff");
    }

    #[test]
    fn rejects_everything_else() {
        for text in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:f",
            "aa:bb:cc:dd:ee:fff",
            "aa:bb-cc:dd:ee:ff",
            "gg:bb:cc:dd:ee:ff",
            "aabbccddeeff",
            " aa:bb:cc:dd:ee:ff",
            "+a:bb:cc:dd:ee:ff",
        ] {
            let error = text.parse::<MacAddr>().expect_err(text);
            assert!(error.to_string().contains("is not a MAC address"), "{text}");
        }
    }

    #[test]
    fn group_and_zero_addresses_are_no_station() {
        for text in [
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:fb",
            "33:33:00:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(!text.parse::<MacAddr>().expect(text).is_station(), "{text}");
        }
        for text in [
            "02:00:00:00:00:01",
            "aa:bb:cc:dd:ee:ff",
            "00:00:00:00:00:01",
        ] {
            assert!(text.parse::<MacAddr>().expect(text).is_station(), "{text}");
        }
    }

    #[test]
    fn json_round_trip() {
        let mac: MacAddr = serde_json::from_str("\"AA-BB-CC-DD-EE-01\"").expect("parses");
        assert_eq!(
            serde_json::to_string(&mac).expect("serialises"),
            "\"aa:bb:cc:dd:ee:01\""
        );
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
    }
}
