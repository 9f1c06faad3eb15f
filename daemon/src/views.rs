//! The API's documents: what it answers (views) and what it takes (requests). These names and
//! fields are the contract with portals and `hotspotctl` (interface.md). Plain data on the
//! lowest floor of the daemon: the control task builds them, the API serves them, `/metrics`
//! and `hotspotctl` read them, and none of those needs another to name them. It names only
//! other plain data (a MAC, a price, a session's fields and states, the kernel's and the
//! store's counters), never the parts that do the work. Pure.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    bpf::stats::KernelStats,
    mac::MacAddr,
    price::Price,
    sessions::{
        data::{SessionData, SessionType},
        engine::model::{ClientState, Session, SessionId, SessionState},
    },
    store::health::StoreHealth,
};

/// An address that moved from one MAC to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressMove {
    pub ip: IpAddr,
    pub from: MacAddr,
    pub to: MacAddr,
    pub at: DateTime<Utc>,
}

/// Which clients a listing shows (`GET /v1/clients`, `hotspotctl clients`): those whose MAC or
/// one of whose addresses contains `search` (lower case) and whose state is `state`, in MAC
/// order, at most `limit` of them after skipping `offset`: a page of a crowd, without the
/// daemon building a view of every client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFilter {
    pub search: Option<String>,
    pub state: Option<ClientState>,
    pub offset: usize,
    pub limit: Option<usize>,
}

/// A client listing's `search`, lower case: a piece of a MAC or an address, so only hex
/// digits, `:` and `.` (it then needs no escaping in a URL either); `None` when empty.
pub fn client_search(text: &str) -> Result<String, String> {
    let search = text.trim().to_ascii_lowercase();
    if search.is_empty() || search.len() > 64 {
        return Err(format!(
            "search '{text}' must be 1 to 64 characters of a MAC or an address"
        ));
    }
    if let Some(bad) = search
        .chars()
        .find(|c| !(c.is_ascii_hexdigit() || *c == ':' || *c == '.'))
    {
        return Err(format!(
            "search '{text}' has '{bad}': it matches MACs and addresses, so only hex digits, ':' and '.'"
        ));
    }
    Ok(search)
}

/// One page of a client listing, and how many clients match in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPage {
    pub total: usize,
    pub clients: Vec<ClientView>,
}

/// One client in `GET /v1/clients`. Bytes are IP-level; `up`/`down` are billable traffic,
/// `local_bytes` is traffic with the box itself (never billed), `dropped_bytes` what the gate
/// stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    pub mac: MacAddr,
    pub ips: Vec<IpAddr>,
    pub state: ClientState,
    pub session_id: Option<i64>,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_packets: u64,
    pub down_packets: u64,
    pub local_bytes: u64,
    pub dropped_bytes: u64,
    pub dropped_packets: u64,
    pub last_seen: Option<DateTime<Utc>>,
    /// The running session's speed limits in Mbit/s (its own or the global ones); `None`
    /// while the client has no running session.
    pub down_mbits: Option<u32>,
    pub up_mbits: Option<u32>,
    /// Its addresses that moved to or from another MAC in the last ten minutes. Absent from
    /// an older daemon's answer.
    #[serde(default)]
    pub address_conflicts: Vec<AddressMove>,
    /// For a device using a voucher's device slot: the device holding the voucher's session,
    /// whose session (and budget) it shares; `state` and `session_id` are that session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares_with: Option<MacAddr>,
}

/// The RFC 8908 captive-portal API's answer (`GET /api/captive` on the portal), in the RFC's
/// field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CaptiveView {
    /// Whether the client is kept from the internet: no running session.
    pub captive: bool,
    /// Where it pays, logs in, or sees what is left.
    pub user_portal_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_info_url: Option<String>,
    /// Whether the portal can give it more (a client can always buy another session).
    pub can_extend_session: bool,
    /// Whole seconds its running session has left, from the kernel's deadline; absent when
    /// its time does not count (a data session) or it is captive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_remaining: Option<u64>,
    /// Bytes its running session has left, from the kernel's budget; absent when its data
    /// does not count (a time session) or it is captive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_remaining: Option<u64>,
}

/// What is left of a session: seconds when its time counts, bytes when its data counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remaining {
    pub seconds: Option<u64>,
    pub bytes: Option<u64>,
}

/// One client as the built-in portal's page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalClient {
    /// Who it is, as the kernel saw it send from the request's address.
    pub mac: MacAddr,
    pub state: ClientState,
    /// What is left of its running session (from the kernel's grant), or of the one it
    /// resumes; `None` when it has neither.
    pub remaining: Option<Remaining>,
    /// The running session's speed limits in Mbit/s.
    pub down_mbits: Option<u32>,
    pub up_mbits: Option<u32>,
    /// Its other sessions, which run when the current one ends, in no particular order.
    pub queued: Vec<QueuedSession>,
    /// Whether the landing page offers it a free trial (docs/trials.md).
    pub trial: TrialOffer,
    /// Its voucher moved to another device lately (docs/vouchers.md, "Device slots"): the
    /// landing page says so.
    pub voucher_moved: bool,
}

/// What the landing page says of a free trial to one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialOffer {
    /// The hotspot gives none (`portal.trial_secs` = 0).
    Off,
    /// One of this many seconds, for the asking.
    Available { secs: u64 },
    /// The device had one lately; the next in this many seconds.
    After { retry_secs: u64 },
}

/// A session waiting for its client's current one to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuedSession {
    pub kind: SessionType,
    pub remaining: Remaining,
}

/// One session in `GET /v1/sessions`: `id`, `mac`, every `SessionData` field under its Rust
/// name (`type` as the number 0/1/2), and `state`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    #[serde(flatten)]
    pub session: Session,
    pub state: SessionState,
    /// When it ended, for a session read from the history; absent for a live one (and for
    /// one that ended moments ago, before a save let go of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub lan_interface: String,
    pub clients: usize,
    /// Sessions held in memory: the live ones (ended ones are history, in the database).
    pub sessions: usize,
    pub last_poll_ms: f64,
    /// How long the last save to SQLite took. Absent from an older daemon's answer.
    #[serde(default)]
    pub last_save_ms: f64,
    pub kernel: KernelStats,
    /// Whether saves reach the database: `ok`, or `degraded` with why, since when, what waits
    /// and when the next attempt is.
    pub storage: StoreHealth,
    /// Stored sessions not loaded at start because a value is out of range. Absent from an
    /// older daemon's answer.
    #[serde(default)]
    pub sessions_set_aside: Vec<SetAsideView>,
    /// How full the kernel's per-client tables were at the last poll. Absent from an older
    /// daemon's answer.
    #[serde(default)]
    pub kernel_maps: Vec<MapFillView>,
}

/// One of the kernel's per-client tables: `usage` (clients with room for their counters, every
/// paying one among them), `seen` (every other MAC; when full, the least recently seen is
/// forgotten), `grants`, `addresses` (who sends from each address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapFillView {
    pub map: String,
    pub entries: usize,
    pub capacity: u32,
    /// Within 1 % of its capacity (an LRU map evicts a little before its last entry).
    #[serde(default)]
    pub full: bool,
}

/// A stored session the daemon did not load: it stays in the database, unserved, until the
/// row is corrected or removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAsideView {
    pub id: SessionId,
    pub mac: MacAddr,
    /// Which value is out of range, as one sentence.
    pub reason: String,
}

/// `POST /v1/sessions`: a session to sell to a client. Omitted limits are 0, which validation
/// refuses where the type needs them, with a sentence saying which.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub mac: MacAddr,
    /// `0`/`"time"`, `1`/`"data"` or `2`/`"time_or_data"`.
    #[serde(rename = "type", deserialize_with = "type_number_or_name")]
    pub kind: SessionType,
    #[serde(default)]
    pub time_secs: u64,
    #[serde(default)]
    pub data_mb: f64,
    #[serde(default)]
    pub exp_days: Option<u32>,
    #[serde(default)]
    pub down_mbits: i32,
    #[serde(default)]
    pub up_mbits: i32,
    #[serde(default)]
    pub use_global_speed: bool,
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Start (or resume) the client's session at once.
    #[serde(default)]
    pub connect: bool,
    /// What it was sold for, in `sales.currency`: `"2.50"` or `2.5`, at most three decimals.
    #[serde(default)]
    pub price: Option<Price>,
}

fn default_provider() -> String {
    "api".to_owned()
}

impl NewSession {
    /// The record to store: nothing consumed, never started.
    #[must_use]
    pub fn into_data(self, now: DateTime<Utc>) -> SessionData {
        SessionData {
            provider: self.provider,
            kind: self.kind,
            time_secs: self.time_secs,
            data_mb: self.data_mb,
            time_cons: 0,
            data_cons: 0.0,
            started_at: None,
            exp_days: self.exp_days,
            down_mbits: self.down_mbits,
            up_mbits: self.up_mbits,
            use_global_speed: self.use_global_speed,
            created_at: now,
        }
    }
}

fn type_number_or_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SessionType, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrName {
        Number(u8),
        Name(String),
    }
    match NumberOrName::deserialize(deserializer)? {
        NumberOrName::Number(number) => SessionType::try_from(number),
        NumberOrName::Name(name) => name.parse(),
    }
    .map_err(serde::de::Error::custom)
}

/// Every error the API returns: a stable machine code and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// `POST /v1/vouchers`: `count` vouchers, each selling one session as `POST /v1/sessions`
/// takes it (without `mac`, `provider` and `connect`: the session is the redeeming client's,
/// its provider `"voucher"`, and it connects at once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVoucherBatch {
    pub count: u32,
    #[serde(rename = "type", deserialize_with = "type_number_or_name")]
    pub kind: SessionType,
    #[serde(default)]
    pub time_secs: u64,
    #[serde(default)]
    pub data_mb: f64,
    #[serde(default)]
    pub exp_days: Option<u32>,
    #[serde(default)]
    pub down_mbits: i32,
    #[serde(default)]
    pub up_mbits: i32,
    #[serde(default)]
    pub use_global_speed: bool,
    #[serde(default = "one_device")]
    pub max_devices: u32,
    /// `YYYY-MM-DD` (to the end of that day, UTC) or an RFC 3339 time: after it an unused
    /// voucher can no longer be redeemed.
    #[serde(default)]
    pub valid_until: Option<String>,
    /// What each voucher's session is sold for, in `sales.currency`: `"2.50"` or `2.5`.
    #[serde(default)]
    pub price: Option<Price>,
}

fn one_device() -> u32 {
    1
}

impl NewVoucherBatch {
    /// The plan each voucher sells: nothing consumed, never started.
    #[must_use]
    pub fn plan(&self, now: DateTime<Utc>) -> SessionData {
        SessionData {
            provider: "voucher".to_owned(),
            kind: self.kind,
            time_secs: self.time_secs,
            data_mb: self.data_mb,
            time_cons: 0,
            data_cons: 0.0,
            started_at: None,
            exp_days: self.exp_days,
            down_mbits: self.down_mbits,
            up_mbits: self.up_mbits,
            use_global_speed: self.use_global_speed,
            created_at: now,
        }
    }
}

/// A `valid_until` as written: a date means to the end of that day, UTC.
#[must_use]
pub fn parse_valid_until(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(23, 59, 59)?.and_utc())
}

/// `POST /v1/vouchers/redeem` (for external portals) and `POST /v1/vouchers/revoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherCode {
    #[serde(default)]
    pub mac: Option<MacAddr>,
    pub code: String,
}
