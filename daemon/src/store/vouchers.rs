//! The `vouchers` table: reading every voucher at start, and writing the changed ones inside a
//! save's transaction. Blocking; runs on the store thread.

use std::path::Path;

use rusqlite::{Connection, Row, Transaction};

use super::{
    StoreError,
    schema::fail,
    sqlite::{parse_time, to_sql_int, to_sql_real, to_sql_time},
};
use crate::{
    sessions::data::{SessionData, SessionType},
    vouchers::{Stage, Voucher},
};

const SELECT_VOUCHERS: &str = "
SELECT id, code_hash, provider, type, time_secs, data_mb, exp_days, down_mbits, up_mbits,
    use_global_speed, max_devices, valid_until, state, mac, session_id, created_at, redeemed_at,
    devices, price_milli, session_end
FROM vouchers ORDER BY id";

/// A voucher's row is written whole: created, redeemed, revoked.
const UPSERT_VOUCHER: &str = "
INSERT OR REPLACE INTO vouchers (id, code_hash, provider, type, time_secs, data_mb, exp_days,
    down_mbits, up_mbits, use_global_speed, max_devices, valid_until, state, mac, session_id,
    created_at, redeemed_at, devices, price_milli, session_end)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20)";

/// Every voucher, by id.
pub(super) fn load(conn: &Connection, path: &Path) -> Result<Vec<Voucher>, StoreError> {
    let op = "load the vouchers";
    let mut statement = conn
        .prepare_cached(SELECT_VOUCHERS)
        .map_err(fail(path, op))?;
    let mut rows = statement.query([]).map_err(fail(path, op))?;
    let mut vouchers = Vec::new();
    while let Some(row) = rows.next().map_err(fail(path, op))? {
        vouchers.push(read(row, path)?);
    }
    Ok(vouchers)
}

/// Writes `vouchers` in the transaction `tx`; with `full`, the table keeps no other.
pub(super) fn write(
    tx: &Transaction<'_>,
    path: &Path,
    vouchers: &[Voucher],
    full: bool,
) -> Result<(), StoreError> {
    let op = "save the vouchers";
    if full {
        tx.execute("DELETE FROM vouchers", [])
            .map_err(fail(path, op))?;
    }
    let mut upsert = tx.prepare_cached(UPSERT_VOUCHER).map_err(fail(path, op))?;
    for voucher in vouchers {
        let plan = &voucher.plan;
        upsert
            .execute(rusqlite::params![
                voucher.id,
                voucher.code_hash.as_slice(),
                plan.provider,
                plan.kind as u8,
                to_sql_int("time_secs", plan.time_secs)?,
                to_sql_real("data_mb", plan.data_mb)?,
                plan.exp_days,
                plan.down_mbits,
                plan.up_mbits,
                plan.use_global_speed,
                voucher.max_devices,
                voucher
                    .valid_until
                    .map(|time| to_sql_time("valid_until", time))
                    .transpose()?,
                voucher.stage.name(),
                voucher.mac.map(|mac| mac.to_string()),
                voucher.session_id,
                to_sql_time("created_at", voucher.created_at)?,
                voucher
                    .redeemed_at
                    .map(|time| to_sql_time("redeemed_at", time))
                    .transpose()?,
                voucher
                    .devices
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                voucher.price.map(|price| price.0),
                voucher.session_end.map(crate::store::SessionEnd::name),
            ])
            .map_err(fail(path, op))?;
    }
    Ok(())
}

/// Whether a voucher can be written: refused before the store takes it, so one bad value
/// never blocks every later write.
pub(super) fn storable(voucher: &Voucher) -> Result<(), StoreError> {
    super::sqlite::storable(&voucher.plan)?;
    for (field, time) in [
        ("created_at", Some(voucher.created_at)),
        ("valid_until", voucher.valid_until),
        ("redeemed_at", voucher.redeemed_at),
    ] {
        if let Some(time) = time {
            to_sql_time(field, time)?;
        }
    }
    Ok(())
}

fn read(row: &Row<'_>, path: &Path) -> Result<Voucher, StoreError> {
    let sql = fail(path, "read a voucher");
    let id: i64 = row.get(0).map_err(&sql)?;
    let bad = |field, value: &dyn ToString| StoreError::BadValue {
        path: path.to_owned(),
        table: "vouchers",
        key: id.to_string(),
        field,
        value: value.to_string(),
    };
    let hash: Vec<u8> = row.get(1).map_err(&sql)?;
    let kind: i64 = row.get(3).map_err(&sql)?;
    let time_secs: i64 = row.get(4).map_err(&sql)?;
    let exp_days: Option<i64> = row.get(6).map_err(&sql)?;
    let max_devices: i64 = row.get(10).map_err(&sql)?;
    let valid_until: Option<String> = row.get(11).map_err(&sql)?;
    let state: String = row.get(12).map_err(&sql)?;
    let mac: Option<String> = row.get(13).map_err(&sql)?;
    let created_at: String = row.get(15).map_err(&sql)?;
    let redeemed_at: Option<String> = row.get(16).map_err(&sql)?;
    let devices: String = row.get(17).map_err(&sql)?;
    let session_end: Option<String> = row.get(19).map_err(&sql)?;
    let price: Option<i64> = row.get(18).map_err(&sql)?;
    let time = |field, text: String| parse_time(&text).ok_or_else(|| bad(field, &text));
    let created_at = time("created_at", created_at)?;
    Ok(Voucher {
        id,
        code_hash: <[u8; 32]>::try_from(hash.as_slice())
            .map_err(|_| bad("code_hash", &format!("{} bytes", hash.len())))?,
        plan: SessionData {
            provider: row.get(2).map_err(&sql)?,
            kind: u8::try_from(kind)
                .ok()
                .and_then(|kind| SessionType::try_from(kind).ok())
                .ok_or_else(|| bad("type", &kind))?,
            time_secs: u64::try_from(time_secs).map_err(|_| bad("time_secs", &time_secs))?,
            data_mb: row.get(5).map_err(&sql)?,
            time_cons: 0,
            data_cons: 0.0,
            started_at: None,
            exp_days: exp_days
                .map(|days| u32::try_from(days).map_err(|_| bad("exp_days", &days)))
                .transpose()?,
            down_mbits: row.get(7).map_err(&sql)?,
            up_mbits: row.get(8).map_err(&sql)?,
            use_global_speed: row.get(9).map_err(&sql)?,
            created_at,
        },
        max_devices: u32::try_from(max_devices).map_err(|_| bad("max_devices", &max_devices))?,
        valid_until: valid_until
            .map(|text| time("valid_until", text))
            .transpose()?,
        stage: Stage::from_name(&state).ok_or_else(|| bad("state", &state))?,
        mac: mac
            .map(|text| text.parse().map_err(|_| bad("mac", &text)))
            .transpose()?,
        session_id: row.get(14).map_err(&sql)?,
        created_at,
        redeemed_at: redeemed_at
            .map(|text| time("redeemed_at", text))
            .transpose()?,
        devices: devices
            .split_whitespace()
            .map(|text| text.parse().map_err(|_| bad("devices", &text)))
            .collect::<Result<_, _>>()?,
        price: price
            .map(|milli| {
                (milli >= 0)
                    .then_some(crate::price::Price(milli))
                    .ok_or_else(|| bad("price_milli", &milli))
            })
            .transpose()?,
        session_end: session_end
            .map(|name| {
                crate::store::SessionEnd::from_name(&name).ok_or_else(|| bad("session_end", &name))
            })
            .transpose()?,
    })
}
