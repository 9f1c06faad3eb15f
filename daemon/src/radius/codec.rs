//! RADIUS packets (RFC 2865, 2866, 3579, 5176): their wire form, the authenticators of requests
//! and responses, RFC 2869's Message-Authenticator, the hiding of User-Password, and
//! vendor-specific attributes. Pure: no I/O.
//!
//! Why a codec of our own and not the `radius` crate (moznion, 0.4.0, the one maintained RADIUS
//! crate that is not tied to async-std): it neither computes nor checks Message-Authenticator
//! (it only stores the attribute's bytes), and a NAS must check it in every Access-Accept and
//! Access-Reject it takes since Blast-RADIUS (CVE-2024-3596), and in `CoA` requests; its
//! request-side check does not cover `CoA` with Message-Authenticator either. It also brings a
//! second `rand`, a second `thiserror` and tokio's "full" features. `radius-rust` 0.4.4 has
//! HMAC, but its client is synchronous or async-std, and it reads a dictionary file at run
//! time. What is needed here is ~300 lines over `md-5` and `hmac`, each rule tested below.

use hmac::{Hmac, Mac as _};
use md5::{Digest as _, Md5};

use super::dict;

/// RFC 2865 §3: 20 octets of header, 4096 octets at most.
pub const HEADER_LEN: usize = 20;
pub const MAX_PACKET_LEN: usize = 4096;

/// One attribute as it travels: its type and value (at most 253 octets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub kind: u8,
    pub value: Vec<u8>,
}

impl Attribute {
    #[must_use]
    pub fn new(kind: u8, value: impl Into<Vec<u8>>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }

    #[must_use]
    pub fn text(kind: u8, text: &str) -> Self {
        Self::new(kind, text.as_bytes())
    }

    #[must_use]
    pub fn integer(kind: u8, value: u32) -> Self {
        Self::new(kind, value.to_be_bytes())
    }

    /// A Vendor-Specific attribute (26) holding one vendor attribute (RFC 2865 §5.26).
    #[must_use]
    pub fn vendor(vendor: u32, kind: u8, value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(6 + value.len());
        bytes.extend_from_slice(&vendor.to_be_bytes());
        bytes.push(kind);
        bytes.push(u8::try_from(value.len() + 2).unwrap_or(u8::MAX));
        bytes.extend_from_slice(value);
        Self::new(dict::VENDOR_SPECIFIC, bytes)
    }
}

/// A decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

/// Why bytes are not a packet we take; each says what is wrong with what was received.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("a RADIUS packet of {0} bytes is shorter than its 20-byte header")]
    Short(usize),
    #[error("a RADIUS packet says it is {said} bytes long but {got} arrived")]
    Length { said: usize, got: usize },
    #[error(
        "a RADIUS attribute at byte {0} runs past the end of the packet or is shorter than 2 bytes"
    )]
    Attribute(usize),
    #[error(
        "the packet's authenticator is wrong: the shared secret (radius.secret) differs from the server's, or the packet was forged"
    )]
    Authenticator,
    #[error(
        "the packet's Message-Authenticator is wrong: the shared secret (radius.secret) differs from the server's, or the packet was forged"
    )]
    MessageAuthenticator,
    #[error(
        "the packet has no Message-Authenticator, which this kind of packet must carry (RFC 3579; Blast-RADIUS)"
    )]
    NoMessageAuthenticator,
    #[error("the packet would be {0} bytes, more than RADIUS's 4096")]
    TooLong(usize),
    #[error("attribute {kind} is {len} bytes; RADIUS allows 253")]
    ValueTooLong { kind: u8, len: usize },
}

impl Packet {
    /// Parses `bytes`; checks lengths only (authenticators: [`verify_response`],
    /// [`verify_request`]). Bytes past the stated length are padding and ignored (RFC 2865 §3).
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() < HEADER_LEN {
            return Err(CodecError::Short(bytes.len()));
        }
        let said = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&said) || said > bytes.len() {
            return Err(CodecError::Length {
                said,
                got: bytes.len(),
            });
        }
        let mut authenticator = [0; 16];
        authenticator.copy_from_slice(&bytes[4..HEADER_LEN]);
        let mut attributes = Vec::new();
        let mut at = HEADER_LEN;
        while at < said {
            let len = usize::from(*bytes.get(at + 1).ok_or(CodecError::Attribute(at))?);
            if len < 2 || at + len > said {
                return Err(CodecError::Attribute(at));
            }
            attributes.push(Attribute::new(bytes[at], &bytes[at + 2..at + len]));
            at += len;
        }
        Ok(Self {
            code: bytes[0],
            identifier: bytes[1],
            authenticator,
            attributes,
        })
    }

    /// The first value of attribute `kind`.
    #[must_use]
    pub fn get(&self, kind: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|attribute| attribute.kind == kind)
            .map(|attribute| attribute.value.as_slice())
    }

    /// The first value of attribute `kind` as a 32-bit integer.
    #[must_use]
    pub fn integer(&self, kind: u8) -> Option<u32> {
        self.get(kind).and_then(be_u32)
    }

    /// The first value of vendor `vendor`'s attribute `kind`, in any Vendor-Specific
    /// attribute (one may hold several).
    #[must_use]
    pub fn vendor(&self, vendor: u32, kind: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .filter(|attribute| attribute.kind == dict::VENDOR_SPECIFIC)
            .filter(|attribute| attribute.value.get(..4) == Some(&vendor.to_be_bytes()[..]))
            .find_map(|attribute| {
                let mut rest = &attribute.value[4..];
                while rest.len() >= 2 {
                    let len = usize::from(rest[1]);
                    if len < 2 || len > rest.len() {
                        return None;
                    }
                    if rest[0] == kind {
                        return Some(&rest[2..len]);
                    }
                    rest = &rest[len..];
                }
                None
            })
    }

    #[must_use]
    pub fn vendor_integer(&self, vendor: u32, kind: u8) -> Option<u32> {
        self.vendor(vendor, kind).and_then(be_u32)
    }

    /// The wire form with the authenticator as it is and any Message-Authenticator as given.
    fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + 64);
        bytes.extend_from_slice(&[self.code, self.identifier, 0, 0]);
        bytes.extend_from_slice(&self.authenticator);
        for attribute in &self.attributes {
            if attribute.value.len() > 253 {
                return Err(CodecError::ValueTooLong {
                    kind: attribute.kind,
                    len: attribute.value.len(),
                });
            }
            bytes.push(attribute.kind);
            bytes.push(u8::try_from(attribute.value.len() + 2).unwrap_or(u8::MAX));
            bytes.extend_from_slice(&attribute.value);
        }
        let len = u16::try_from(bytes.len())
            .ok()
            .filter(|len| usize::from(*len) <= MAX_PACKET_LEN)
            .ok_or(CodecError::TooLong(bytes.len()))?;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        Ok(bytes)
    }
}

/// Attributes in their wire form, one after another (what the accounting spool keeps).
pub fn encode_attributes(attributes: &[Attribute]) -> Result<Vec<u8>, CodecError> {
    let packet = Packet {
        code: 0,
        identifier: 0,
        authenticator: [0; 16],
        attributes: attributes.to_vec(),
    };
    Ok(packet.to_bytes()?.split_off(HEADER_LEN))
}

/// The reverse of [`encode_attributes`].
pub fn decode_attributes(bytes: &[u8]) -> Result<Vec<Attribute>, CodecError> {
    let len = HEADER_LEN + bytes.len();
    let len = u16::try_from(len).map_err(|_| CodecError::TooLong(len))?;
    let mut packet = vec![0, 0];
    packet.extend_from_slice(&len.to_be_bytes());
    packet.extend_from_slice(&[0; 16]);
    packet.extend_from_slice(bytes);
    Ok(Packet::decode(&packet)?.attributes)
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut hash = Md5::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().into()
}

fn hmac_md5(secret: &[u8], bytes: &[u8]) -> [u8; 16] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let Ok(mut hmac) = Hmac::<Md5>::new_from_slice(secret) else {
        return [0; 16];
    };
    hmac.update(bytes);
    hmac.finalize().into_bytes().into()
}

/// Where the value of the (first) Message-Authenticator starts in `bytes`, if it has one.
fn message_authenticator_at(bytes: &[u8]) -> Option<usize> {
    let mut at = HEADER_LEN;
    while at + 2 <= bytes.len() {
        let len = usize::from(bytes[at + 1]);
        if len < 2 {
            return None;
        }
        if bytes[at] == dict::MESSAGE_AUTHENTICATOR && len == 18 {
            return Some(at + 2);
        }
        at += len;
    }
    None
}

/// Adds a zeroed Message-Authenticator to `packet` unless it has one.
fn with_message_authenticator(packet: &mut Packet) {
    if packet.get(dict::MESSAGE_AUTHENTICATOR).is_none() {
        packet
            .attributes
            .push(Attribute::new(dict::MESSAGE_AUTHENTICATOR, [0; 16]));
    }
}

/// An Access-Request's wire form: `packet.authenticator` is its random Request Authenticator
/// (which also hides the password); a Message-Authenticator is added and signed (RFC 3579
/// §3.2: HMAC-MD5 of the packet with the attribute's value zeroed).
pub fn encode_access_request(mut packet: Packet, secret: &[u8]) -> Result<Vec<u8>, CodecError> {
    with_message_authenticator(&mut packet);
    let mut bytes = packet.to_bytes()?;
    sign_message_authenticator(&mut bytes, secret);
    Ok(bytes)
}

/// Fills in the Message-Authenticator of `bytes` (zeroed), over the bytes as they are.
fn sign_message_authenticator(bytes: &mut [u8], secret: &[u8]) {
    if let Some(at) = message_authenticator_at(bytes) {
        bytes[at..at + 16].fill(0);
        let mac = hmac_md5(secret, bytes);
        bytes[at..at + 16].copy_from_slice(&mac);
    }
}

/// An Accounting-Request's, CoA-Request's or Disconnect-Request's wire form (RFC 2866 §3,
/// RFC 5176 §3.5): the Request Authenticator is the MD5 of the packet with it zeroed, and the
/// secret; with `message_authenticator`, one is signed first over the zeroed authenticator.
pub fn encode_signed_request(
    mut packet: Packet,
    secret: &[u8],
    message_authenticator: bool,
) -> Result<Vec<u8>, CodecError> {
    packet.authenticator = [0; 16];
    if message_authenticator {
        with_message_authenticator(&mut packet);
    }
    let mut bytes = packet.to_bytes()?;
    sign_message_authenticator(&mut bytes, secret);
    let authenticator = md5(&[&bytes, secret]);
    bytes[4..HEADER_LEN].copy_from_slice(&authenticator);
    Ok(bytes)
}

/// A response's wire form (Access-Accept/Reject, Accounting-Response, CoA/Disconnect-ACK/NAK)
/// to the request whose authenticator is `request_authenticator`: a Message-Authenticator
/// signed over the packet with the request's authenticator in place (RFC 3579 §3.2), then the
/// Response Authenticator, MD5(code, id, length, request authenticator, attributes, secret).
pub fn encode_response(
    mut packet: Packet,
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<Vec<u8>, CodecError> {
    packet.authenticator = *request_authenticator;
    with_message_authenticator(&mut packet);
    let mut bytes = packet.to_bytes()?;
    sign_message_authenticator(&mut bytes, secret);
    let authenticator = md5(&[&bytes, secret]);
    bytes[4..HEADER_LEN].copy_from_slice(&authenticator);
    Ok(bytes)
}

/// Checks a response to the request with `request_authenticator` and decodes it. Its Response
/// Authenticator must be right; so must its Message-Authenticator, which Access-Accept and
/// Access-Reject must carry (`require_message_authenticator`).
pub fn verify_response(
    bytes: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
    require_message_authenticator: bool,
) -> Result<Packet, CodecError> {
    let packet = Packet::decode(bytes)?;
    let bytes = &bytes[..usize::from(u16::from_be_bytes([bytes[2], bytes[3]]))];
    let expected = md5(&[
        &bytes[..4],
        request_authenticator,
        &bytes[HEADER_LEN..],
        secret,
    ]);
    if !constant_eq(&expected, &packet.authenticator) {
        return Err(CodecError::Authenticator);
    }
    let mut copy = bytes.to_vec();
    copy[4..HEADER_LEN].copy_from_slice(request_authenticator);
    check_message_authenticator(&mut copy, secret, require_message_authenticator)?;
    Ok(packet)
}

/// Checks a CoA-Request or Disconnect-Request (RFC 5176 §3.5: its authenticator as an
/// Accounting-Request's) and decodes it; a Message-Authenticator, if present or
/// `require_message_authenticator`, must be right.
pub fn verify_request(
    bytes: &[u8],
    secret: &[u8],
    require_message_authenticator: bool,
) -> Result<Packet, CodecError> {
    let packet = Packet::decode(bytes)?;
    let bytes = &bytes[..usize::from(u16::from_be_bytes([bytes[2], bytes[3]]))];
    let expected = md5(&[&bytes[..4], &[0; 16], &bytes[HEADER_LEN..], secret]);
    if !constant_eq(&expected, &packet.authenticator) {
        return Err(CodecError::Authenticator);
    }
    let mut copy = bytes.to_vec();
    copy[4..HEADER_LEN].fill(0);
    check_message_authenticator(&mut copy, secret, require_message_authenticator)?;
    Ok(packet)
}

/// Checks the Message-Authenticator of `bytes` (whose authenticator field already holds what
/// it was signed over).
fn check_message_authenticator(
    bytes: &mut [u8],
    secret: &[u8],
    required: bool,
) -> Result<(), CodecError> {
    let Some(at) = message_authenticator_at(bytes) else {
        return if required {
            Err(CodecError::NoMessageAuthenticator)
        } else {
            Ok(())
        };
    };
    let mut got = [0; 16];
    got.copy_from_slice(&bytes[at..at + 16]);
    bytes[at..at + 16].fill(0);
    if constant_eq(&hmac_md5(secret, bytes), &got) {
        Ok(())
    } else {
        Err(CodecError::MessageAuthenticator)
    }
}

fn constant_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// User-Password hidden as RFC 2865 §5.2 says: padded to 16 octets, each block `XOR`ed with
/// MD5(secret + the previous block), the first with the Request Authenticator. At most 128
/// octets.
#[must_use]
pub fn hide_password(password: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let password = &password[..password.len().min(128)];
    let blocks = password.len().div_ceil(16).max(1);
    let mut hidden = Vec::with_capacity(blocks * 16);
    let mut previous: Vec<u8> = authenticator.to_vec();
    for block in 0..blocks {
        let key = md5(&[secret, &previous]);
        let start = hidden.len();
        for (i, byte) in key.iter().enumerate() {
            hidden.push(password.get(block * 16 + i).copied().unwrap_or(0) ^ byte);
        }
        previous = hidden[start..].to_vec();
    }
    hidden
}

/// The reverse of [`hide_password`] (the NUL padding removed): tests, and a server's view.
#[must_use]
pub fn reveal_password(hidden: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let mut password = Vec::with_capacity(hidden.len());
    let mut previous: &[u8] = authenticator;
    for block in hidden.chunks(16) {
        let key = md5(&[secret, previous]);
        password.extend(block.iter().zip(key).map(|(byte, key)| byte ^ key));
        previous = block;
    }
    while password.last() == Some(&0) {
        password.pop();
    }
    password
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"xyzzy5461";

    /// RFC 2865 §7.1's example: user "nemo", password "arctangent", secret "xyzzy5461".
    #[test]
    fn the_password_is_hidden_as_rfc_2865_shows() {
        let authenticator: [u8; 16] = [
            0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4,
            0x22, 0x7a,
        ];
        let hidden = hide_password(b"arctangent", SECRET, &authenticator);
        assert_eq!(
            hidden,
            [
                0x0d, 0xbe, 0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce, 0x31, 0x96, 0xe4, 0x3f, 0x78, 0x2a,
                0x0a, 0xee
            ]
        );
        assert_eq!(
            reveal_password(&hidden, SECRET, &authenticator),
            b"arctangent"
        );
        let long = b"a password longer than sixteen octets";
        let hidden = hide_password(long, SECRET, &authenticator);
        assert_eq!(hidden.len(), 48);
        assert_eq!(reveal_password(&hidden, SECRET, &authenticator), long);
    }

    /// RFC 2865 §7.1's Access-Accept to that request: its Response Authenticator.
    #[test]
    fn a_response_authenticator_is_checked_as_rfc_2865_shows() {
        let request_authenticator: [u8; 16] = [
            0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4,
            0x22, 0x7a,
        ];
        let accept: [u8; 38] = [
            0x02, 0x00, 0x00, 0x26, 0x86, 0xfe, 0x22, 0x0e, 0x76, 0x24, 0xba, 0x2a, 0x10, 0x05,
            0xf6, 0xbf, 0x9b, 0x55, 0xe0, 0xb2, 0x06, 0x06, 0x00, 0x00, 0x00, 0x01, 0x0f, 0x06,
            0x00, 0x00, 0x00, 0x00, 0x0e, 0x06, 0xc0, 0xa8, 0x01, 0x03,
        ];
        let packet =
            verify_response(&accept, &request_authenticator, SECRET, false).expect("authentic");
        assert_eq!(packet.code, dict::ACCESS_ACCEPT);
        assert_eq!(packet.integer(dict::SERVICE_TYPE), Some(1));
        assert_eq!(
            verify_response(&accept, &request_authenticator, b"other", false),
            Err(CodecError::Authenticator)
        );
        assert_eq!(
            verify_response(&accept, &request_authenticator, SECRET, true),
            Err(CodecError::NoMessageAuthenticator),
            "an Access-Accept without Message-Authenticator is refused when one is required"
        );
        let mut forged = accept;
        forged[25] = 2;
        assert_eq!(
            verify_response(&forged, &request_authenticator, SECRET, false),
            Err(CodecError::Authenticator)
        );
    }

    #[test]
    fn responses_with_message_authenticator_round_trip_and_tampering_is_caught() {
        let request = [7_u8; 16];
        let accept = Packet {
            code: dict::ACCESS_ACCEPT,
            identifier: 9,
            authenticator: [0; 16],
            attributes: vec![
                Attribute::integer(dict::SESSION_TIMEOUT, 3600),
                Attribute::vendor(
                    dict::VENDOR_WISPR,
                    dict::WISPR_BANDWIDTH_MAX_DOWN,
                    &2_000_000_u32.to_be_bytes(),
                ),
            ],
        };
        let bytes = encode_response(accept, &request, SECRET).expect("encodes");
        let packet = verify_response(&bytes, &request, SECRET, true).expect("authentic");
        assert_eq!(packet.integer(dict::SESSION_TIMEOUT), Some(3600));
        assert_eq!(
            packet.vendor_integer(dict::VENDOR_WISPR, dict::WISPR_BANDWIDTH_MAX_DOWN),
            Some(2_000_000)
        );
        assert_eq!(packet.vendor_integer(dict::VENDOR_WISPR, 99), None);
        // A man in the middle who can make the Response Authenticator right (Blast-RADIUS's
        // MD5 collision) still cannot make the HMAC right: changed, the Message-Authenticator
        // is refused on its own.
        let mut resigned = bytes.clone();
        let at = message_authenticator_at(&resigned).expect("has one");
        resigned[at] ^= 1;
        let authenticator = md5(&[&resigned[..4], &request, &resigned[HEADER_LEN..], SECRET]);
        resigned[4..HEADER_LEN].copy_from_slice(&authenticator);
        assert_eq!(
            verify_response(&resigned, &request, SECRET, true),
            Err(CodecError::MessageAuthenticator)
        );
    }

    #[test]
    fn signed_requests_verify_and_forgeries_do_not() {
        let coa = Packet {
            code: dict::COA_REQUEST,
            identifier: 1,
            authenticator: [0; 16],
            attributes: vec![
                Attribute::text(dict::USER_NAME, "ALICE"),
                Attribute::integer(dict::EVENT_TIMESTAMP, 1_700_000_000),
            ],
        };
        for with_ma in [false, true] {
            let bytes = encode_signed_request(coa.clone(), SECRET, with_ma).expect("encodes");
            let packet = verify_request(&bytes, SECRET, with_ma).expect("authentic");
            assert_eq!(packet.get(dict::USER_NAME), Some(&b"ALICE"[..]));
            assert_eq!(
                verify_request(&bytes, b"wrong", false),
                Err(CodecError::Authenticator)
            );
            let mut changed = bytes.clone();
            *changed.last_mut().expect("bytes") ^= 1;
            assert_eq!(
                verify_request(&changed, SECRET, false),
                Err(CodecError::Authenticator)
            );
        }
        let plain = encode_signed_request(coa, SECRET, false).expect("encodes");
        assert_eq!(
            verify_request(&plain, SECRET, true),
            Err(CodecError::NoMessageAuthenticator)
        );
    }

    #[test]
    fn an_access_request_carries_a_message_authenticator_its_server_can_check() {
        let authenticator = [3_u8; 16];
        let request = Packet {
            code: dict::ACCESS_REQUEST,
            identifier: 4,
            authenticator,
            attributes: vec![Attribute::text(dict::USER_NAME, "BOB")],
        };
        let mut bytes = encode_access_request(request, SECRET).expect("encodes");
        let at = message_authenticator_at(&bytes).expect("added");
        let mut got = [0; 16];
        got.copy_from_slice(&bytes[at..at + 16]);
        bytes[at..at + 16].fill(0);
        assert_eq!(hmac_md5(SECRET, &bytes), got);
    }

    #[test]
    fn malformed_packets_are_refused_with_what_is_wrong() {
        assert_eq!(Packet::decode(&[1; 10]), Err(CodecError::Short(10)));
        let mut bytes = vec![2, 1, 0, 30];
        bytes.extend([0; 16]);
        assert!(matches!(
            Packet::decode(&bytes),
            Err(CodecError::Length { said: 30, got: 20 })
        ));
        bytes[3] = 23;
        bytes.extend([1, 0, 0]);
        assert_eq!(Packet::decode(&bytes), Err(CodecError::Attribute(20)));
        bytes[21] = 5;
        assert_eq!(Packet::decode(&bytes), Err(CodecError::Attribute(20)));
        let long = Packet {
            code: 1,
            identifier: 0,
            authenticator: [0; 16],
            attributes: vec![Attribute::new(1, vec![0; 254])],
        };
        assert!(matches!(
            encode_access_request(long, SECRET),
            Err(CodecError::ValueTooLong { kind: 1, len: 254 })
        ));
    }
}
