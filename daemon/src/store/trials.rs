//! The `trials` table: each device's last free trial (docs/trials.md), read at start and written
//! inside a save's transaction; the control task forgets entries past the reset window, and the
//! same write deletes them. Blocking; runs on the store thread.

use std::path::Path;

use rusqlite::{Connection, Transaction};

use super::{
    StoreError,
    schema::fail,
    sqlite::{parse_time, to_sql_time},
};
use crate::{mac::MacAddr, trials::Trial};

/// Every device's last trial, by MAC.
pub(super) fn load(conn: &Connection, path: &Path) -> Result<Vec<Trial>, StoreError> {
    let op = "load the trials";
    let mut statement = conn
        .prepare_cached("SELECT mac, granted_at FROM trials ORDER BY mac")
        .map_err(fail(path, op))?;
    let mut rows = statement.query([]).map_err(fail(path, op))?;
    let mut trials = Vec::new();
    while let Some(row) = rows.next().map_err(fail(path, op))? {
        let mac: String = row.get(0).map_err(fail(path, op))?;
        let granted_at: String = row.get(1).map_err(fail(path, op))?;
        let bad = |field, value: &str| StoreError::BadValue {
            path: path.to_owned(),
            table: "trials",
            key: mac.clone(),
            field,
            value: value.to_owned(),
        };
        trials.push(Trial {
            mac: mac.parse().map_err(|_| bad("mac", &mac))?,
            granted_at: parse_time(&granted_at).ok_or_else(|| bad("granted_at", &granted_at))?,
        });
    }
    Ok(trials)
}

/// Writes `trials` and deletes `removed` in the transaction `tx`; with `full`, the table keeps
/// no other.
pub(super) fn write(
    tx: &Transaction<'_>,
    path: &Path,
    trials: &[Trial],
    removed: &[MacAddr],
    full: bool,
) -> Result<(), StoreError> {
    let op = "save the trials";
    if full {
        tx.execute("DELETE FROM trials", [])
            .map_err(fail(path, op))?;
    }
    let mut upsert = tx
        .prepare_cached("INSERT OR REPLACE INTO trials (mac, granted_at) VALUES (?1, ?2)")
        .map_err(fail(path, op))?;
    for trial in trials {
        upsert
            .execute((
                trial.mac.to_string(),
                to_sql_time("granted_at", trial.granted_at)?,
            ))
            .map_err(fail(path, op))?;
    }
    let mut delete = tx
        .prepare_cached("DELETE FROM trials WHERE mac = ?1")
        .map_err(fail(path, op))?;
    for mac in removed {
        delete.execute([mac.to_string()]).map_err(fail(path, op))?;
    }
    Ok(())
}

/// Whether a trial can be written: refused before the store takes it.
pub(super) fn storable(trial: &Trial) -> Result<(), StoreError> {
    to_sql_time("granted_at", trial.granted_at).map(|_| ())
}
