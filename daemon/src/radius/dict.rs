//! The RADIUS codes and attributes hotspotd sends and reads, with their numbers from the RFCs
//! and the vendors' dictionaries (`FreeRADIUS` ships the same in /usr/share/freeradius/). Pure.

// Codes (RFC 2865 §3, RFC 2866 §3, RFC 5176 §2.3).
pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCOUNTING_REQUEST: u8 = 4;
pub const ACCOUNTING_RESPONSE: u8 = 5;
pub const DISCONNECT_REQUEST: u8 = 40;
pub const DISCONNECT_ACK: u8 = 41;
pub const DISCONNECT_NAK: u8 = 42;
pub const COA_REQUEST: u8 = 43;
pub const COA_ACK: u8 = 44;
pub const COA_NAK: u8 = 45;

// Attributes (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5).
pub const USER_NAME: u8 = 1;
pub const USER_PASSWORD: u8 = 2;
pub const NAS_IP_ADDRESS: u8 = 4;
pub const SERVICE_TYPE: u8 = 6;
pub const FRAMED_IP_ADDRESS: u8 = 8;
pub const REPLY_MESSAGE: u8 = 18;
pub const VENDOR_SPECIFIC: u8 = 26;
pub const SESSION_TIMEOUT: u8 = 27;
pub const IDLE_TIMEOUT: u8 = 28;
pub const CALLED_STATION_ID: u8 = 30;
pub const CALLING_STATION_ID: u8 = 31;
pub const NAS_IDENTIFIER: u8 = 32;
pub const ACCT_STATUS_TYPE: u8 = 40;
pub const ACCT_DELAY_TIME: u8 = 41;
pub const ACCT_INPUT_OCTETS: u8 = 42;
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
pub const ACCT_SESSION_ID: u8 = 44;
pub const ACCT_SESSION_TIME: u8 = 46;
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
pub const EVENT_TIMESTAMP: u8 = 55;
pub const NAS_PORT_TYPE: u8 = 61;
pub const ACCT_INTERIM_INTERVAL: u8 = 85;
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
pub const ERROR_CAUSE: u8 = 101;

/// Service-Type Login-User.
pub const SERVICE_TYPE_LOGIN: u32 = 1;
/// NAS-Port-Type Wireless-802.11.
pub const NAS_PORT_TYPE_WIRELESS: u32 = 19;

// Acct-Status-Type values (RFC 2866 §5.1).
pub const ACCT_START: u32 = 1;
pub const ACCT_STOP: u32 = 2;
pub const ACCT_INTERIM_UPDATE: u32 = 3;

// Acct-Terminate-Cause values (RFC 2866 §5.10).
pub const TERMINATE_USER_REQUEST: u32 = 1;
pub const TERMINATE_IDLE_TIMEOUT: u32 = 4;
pub const TERMINATE_SESSION_TIMEOUT: u32 = 5;
pub const TERMINATE_ADMIN_RESET: u32 = 6;
pub const TERMINATE_NAS_REBOOT: u32 = 11;

// Error-Cause values (RFC 5176 §3.6).
pub const ERROR_SESSION_CONTEXT_NOT_FOUND: u32 = 503;
pub const ERROR_INVALID_REQUEST: u32 = 404;
pub const ERROR_UNSUPPORTED_SERVICE: u32 = 405;
pub const ERROR_RESOURCES_UNAVAILABLE: u32 = 506;

// Vendors (IANA enterprise numbers) and their attributes.
/// `ChilliSpot` (also what `CoovaChilli` answers to).
pub const VENDOR_CHILLISPOT: u32 = 14_559;
pub const CHILLISPOT_MAX_TOTAL_OCTETS: u8 = 3;
/// `CoovaChilli`'s addition (its dictionary.chillispot; Debian's `FreeRADIUS` lacks it:
/// docs/radius/dictionary.hotspotd adds it).
pub const CHILLISPOT_MAX_TOTAL_GIGAWORDS: u8 = 23;
/// `MikroTik`.
pub const VENDOR_MIKROTIK: u32 = 14_988;
pub const MIKROTIK_TOTAL_LIMIT: u8 = 17;
pub const MIKROTIK_TOTAL_LIMIT_GIGAWORDS: u8 = 18;
/// The Wi-Fi Alliance's `WISPr`.
pub const VENDOR_WISPR: u32 = 14_122;
pub const WISPR_BANDWIDTH_MAX_UP: u8 = 7;
pub const WISPR_BANDWIDTH_MAX_DOWN: u8 = 8;
