//! What a voucher code is: characters of an alphabet without look-alikes, drawn from the OS's
//! CSPRNG, as long as the configuration says within bounds that keep it unguessable, and how
//! what is typed is made comparable. On the lowest floor: the configuration's bounds come from
//! here. Side effects: [`new_code`] reads /dev/urandom.

use std::io::Read as _;

/// The characters of a code: digits and capitals without the look-alikes 0/O, 1/I/L.
pub const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// The shortest code allowed: 9 characters of [`ALPHABET`] are 44.6 bits, the least above 40.
pub const MIN_CODE_LENGTH: usize = 9;
/// The longest code allowed (what the portal's form takes).
pub const MAX_CODE_LENGTH: usize = 32;
/// The default length: 10 characters, 49.5 bits.
pub const DEFAULT_CODE_LENGTH: usize = 10;

/// Bits of randomness in a code of `length` characters.
#[must_use]
pub fn entropy_bits(length: usize) -> f64 {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a code is at most 32 characters"
    )]
    let length = length as f64;
    length * f64::from(u8::try_from(ALPHABET.len()).unwrap_or(u8::MAX)).log2()
}

/// A new code of `length` characters, each drawn uniformly from [`ALPHABET`] with bytes of
/// /dev/urandom (a byte ≥ 248 is drawn again, so no character is likelier than another).
pub fn new_code(length: usize) -> std::io::Result<String> {
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut code = String::with_capacity(length);
    let mut bytes = [0_u8; 64];
    while code.len() < length {
        urandom.read_exact(&mut bytes)?;
        for byte in bytes {
            // 248 = 8 × 31: the bytes below it map onto the alphabet evenly.
            if byte < 248 && code.len() < length {
                code.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
            }
        }
    }
    Ok(code)
}

/// A code as typed, made comparable: case folded, spaces and dashes dropped (cards print codes
/// in groups). `None` when anything else is left that no code holds.
#[must_use]
pub fn normalise(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid =
        (1..=MAX_CODE_LENGTH).contains(&code.len()) && code.bytes().all(|c| ALPHABET.contains(&c));
    valid.then_some(code)
}
