//! A price (`sales.currency`, a session's `price`): thousandths of the currency, read and
//! written exactly, never through a float. Plain data on the lowest floor: sales, vouchers and
//! the API's documents carry it. Pure.

use std::fmt;

use serde::Serialize;

/// A price in thousandths of the currency (`sales.currency`): every ISO 4217 currency has at
/// most three decimals, and an integer adds up exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Price(pub i64);

/// Most a price may be: a billion in any currency, far above any session's.
const MAX_PRICE_MILLI: i64 = 1_000_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "price '{0}' is not a price: write a number from 0 to 1000000000 with at most three decimals, like 2.50"
)]
pub struct BadPrice(pub String);

impl std::str::FromStr for Price {
    type Err = BadPrice;

    /// Reads `2`, `2.5`, `2.50`, `0.125`, exactly (never through a float).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPrice(text.chars().take(40).collect());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 10
            || fraction.len() > 3
            || !digits(whole)
            || !digits(fraction)
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let mut thousandths: i64 = 0;
        for position in 0..3 {
            let digit = fraction
                .as_bytes()
                .get(position)
                .map_or(0, |byte| byte - b'0');
            thousandths = thousandths * 10 + i64::from(digit);
        }
        let milli = whole * 1_000 + thousandths;
        if milli > MAX_PRICE_MILLI {
            return Err(bad());
        }
        Ok(Self(milli))
    }
}

impl fmt::Display for Price {
    /// At least two decimals, three when the third is not 0: `2.50`, `0.125`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, milli) = (self.0.div_euclid(1_000), self.0.rem_euclid(1_000));
        if milli % 10 == 0 {
            write!(f, "{whole}.{:02}", milli / 10)
        } else {
            write!(f, "{whole}.{milli:03}")
        }
    }
}

impl Serialize for Price {
    /// As a decimal string, so no JSON reader turns it into a float.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Price {
    /// A string (`"2.50"`) or a JSON number (`2.5`), read from its decimal text.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Text {
            Text(String),
            Number(serde_json::Number),
        }
        let text = match Text::deserialize(deserializer)? {
            Text::Text(text) => text,
            Text::Number(number) => number.to_string(),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_and_written_exactly() {
        for (text, milli, shown) in [
            ("2", 2_000, "2.00"),
            ("2.5", 2_500, "2.50"),
            ("0.125", 125, "0.125"),
            ("1000000000", 1_000_000_000_000, "1000000000.00"),
            ("19.99", 19_990, "19.99"),
        ] {
            let price: Price = text.parse().expect(text);
            assert_eq!((price.0, price.to_string().as_str()), (milli, shown));
        }
        for bad in [
            "",
            "-1",
            "1.",
            ".5",
            "1.2345",
            "1e3",
            "1000000000.001",
            "NaN",
            "1,5",
            "99999999999",
        ] {
            let error = bad.parse::<Price>().expect_err(bad);
            assert!(error.to_string().contains("like 2.50"), "{error}");
        }
        let from_json: Price = serde_json::from_str("2.5").expect("a number");
        assert_eq!(from_json, Price(2_500));
        let from_text: Price = serde_json::from_str("\"0.10\"").expect("a string");
        assert_eq!(serde_json::to_string(&from_text).expect("json"), "\"0.10\"");
    }
}
