//! Accounting that outlives a server away and a crash of hotspotd (docs/radius.md,
//! "Accounting"): every Accounting-Request is first written to the session database's
//! `radius_spool` table, then sent in the order written, each deleted once the server
//! acknowledged it; while no accounting server answers, the head is retried with backoff (1 s
//! doubling to 30 s) and the rest waits behind it, so a server sees each session's records in
//! order. The same task keeps `radius_sessions`, the RADIUS sessions' accounting state. Side
//! effects: a connection of its own to the session database (SQLite allows it beside the
//! store's; both wait for each other's locks), UDP to the accounting servers.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::mpsc;

use super::{
    Servers,
    codec::{self, Attribute, Packet},
    dict,
};

/// A RADIUS session's accounting state as `radius_sessions` keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpooledSession {
    pub session_id: i64,
    pub user: String,
    pub acct_session_id: String,
    pub mac: String,
    pub ip: String,
    pub interim_secs: u32,
    /// The client's byte totals (up, down) when the session started; `None` until it does.
    pub base: Option<(u64, u64)>,
    /// Unix seconds of the Accounting-Start.
    pub started_at: Option<i64>,
}

/// What the control task hands the spool.
#[derive(Debug)]
enum Order {
    Put(SpooledSession),
    Forget(i64),
    Send(Vec<Attribute>),
}

/// Why the spool cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the RADIUS accounting spool in {} (the session database): RADIUS accounting is off until hotspotd restarts with it readable",
    path.display()
)]
pub struct SpoolError {
    path: PathBuf,
    source: rusqlite::Error,
}

/// The control task's end of the spool; orders never wait.
#[derive(Clone, Debug)]
pub struct Spool {
    orders: mpsc::UnboundedSender<Order>,
}

impl Spool {
    /// Opens the spool in the session database at `path` (migrated by the store already), and
    /// starts sending what it holds to `servers`; returns the RADIUS sessions kept.
    pub fn start(path: &Path, servers: Servers) -> Result<(Self, Vec<SpooledSession>), SpoolError> {
        let fail = |source| SpoolError {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        // Each delivered request's delete is not synced on its own: losing one to a power cut
        // only sends an acknowledged request again, which the server's upsert takes twice
        // harmlessly. Syncing each cost a disk flush per request, and made hotspotd, not the
        // server, the limit of an Interim-Update burst (BENCHMARKS.md, "RADIUS"). What is
        // spooled is synced ([`write`]).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        let sessions = load_sessions(&conn).map_err(fail)?;
        let (orders, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::new(Mutex::new(conn)), queue, servers));
        Ok((Self { orders }, sessions))
    }

    /// Keeps (or replaces) a session's accounting state.
    pub fn put(&self, session: SpooledSession) {
        let _ = self.orders.send(Order::Put(session));
    }

    /// Forgets a session's accounting state (after its Stop is spooled).
    pub fn forget(&self, session_id: i64) {
        let _ = self.orders.send(Order::Forget(session_id));
    }

    /// Spools an Accounting-Request with `attributes` (sent in order after what is spooled).
    pub fn send(&self, attributes: Vec<Attribute>) {
        let _ = self.orders.send(Order::Send(attributes));
    }
}

fn load_sessions(conn: &Connection) -> rusqlite::Result<Vec<SpooledSession>> {
    let mut statement = conn.prepare(
        "SELECT session_id, user_name, acct_session_id, mac, ip, interim_secs, base_up, base_down, started_at
         FROM radius_sessions ORDER BY session_id",
    )?;
    statement
        .query_map([], |row| {
            let up: Option<i64> = row.get(6)?;
            let down: Option<i64> = row.get(7)?;
            Ok(SpooledSession {
                session_id: row.get(0)?,
                user: row.get(1)?,
                acct_session_id: row.get(2)?,
                mac: row.get(3)?,
                ip: row.get(4)?,
                interim_secs: row.get(5)?,
                base: up.zip(down).map(|(up, down)| {
                    (
                        u64::try_from(up).unwrap_or(0),
                        u64::try_from(down).unwrap_or(0),
                    )
                }),
                started_at: row.get(8)?,
            })
        })?
        .collect()
}

/// Writes `orders` in one transaction, synced to disk before this returns: a power cut
/// loses no accounting that was spooled.
fn write(conn: &Mutex<Connection>, orders: &[Order]) -> rusqlite::Result<()> {
    let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
    // Unsynced, a write still survives a crash of hotspotd: better that than none.
    if let Err(error) = conn.pragma_update(None, "synchronous", "FULL") {
        tracing::warn!(error = %crate::text::chain(&error), "the RADIUS spool's writes are not synced to disk");
    }
    let written = write_orders(&mut conn, orders);
    if let Err(error) = conn.pragma_update(None, "synchronous", "NORMAL") {
        tracing::warn!(error = %crate::text::chain(&error), "each delivered RADIUS request's delete is synced to disk");
    }
    written
}

fn write_orders(conn: &mut Connection, orders: &[Order]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let now = chrono::Utc::now().timestamp();
    for order in orders {
        match order {
            Order::Put(session) => {
                tx.execute(
                    "INSERT OR REPLACE INTO radius_sessions (session_id, user_name, acct_session_id, mac, ip, interim_secs, base_up, base_down, started_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        session.session_id,
                        session.user,
                        session.acct_session_id,
                        session.mac,
                        session.ip,
                        session.interim_secs,
                        session.base.map(|(up, _)| i64::try_from(up).unwrap_or(i64::MAX)),
                        session.base.map(|(_, down)| i64::try_from(down).unwrap_or(i64::MAX)),
                        session.started_at,
                    ],
                )?;
            }
            Order::Forget(id) => {
                tx.execute("DELETE FROM radius_sessions WHERE session_id = ?1", [id])?;
            }
            Order::Send(attributes) => {
                let bytes = codec::encode_attributes(attributes).unwrap_or_default();
                tx.execute(
                    "INSERT INTO radius_spool (attributes, queued_at) VALUES (?1, ?2)",
                    params![bytes, now],
                )?;
            }
        }
    }
    tx.commit()
}

/// The oldest spooled request: its row, attributes and when it was spooled.
fn head(conn: &Mutex<Connection>) -> rusqlite::Result<Option<(i64, Vec<u8>, i64)>> {
    let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
    conn.query_row(
        "SELECT id, attributes, queued_at FROM radius_spool ORDER BY id LIMIT 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .optional()
}

fn delete(conn: &Mutex<Connection>, id: i64) -> rusqlite::Result<()> {
    let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
    conn.execute("DELETE FROM radius_spool WHERE id = ?1", [id])
        .map(drop)
}

/// The longest wait between two tries of the head while no server answers.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Writes orders as they come and sends the spool's head until it is empty, then waits.
async fn run(
    conn: Arc<Mutex<Connection>>,
    mut queue: mpsc::UnboundedReceiver<Order>,
    servers: Servers,
) {
    let mut backoff = Duration::from_secs(1);
    let mut pending = Vec::new();
    loop {
        while let Ok(order) = queue.try_recv() {
            pending.push(order);
        }
        if !pending.is_empty() {
            let batch = std::mem::take(&mut pending);
            let db = Arc::clone(&conn);
            match tokio::task::spawn_blocking(move || write(&db, &batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(error = %crate::text::chain(&error), "RADIUS accounting cannot be written to the session database; it is lost");
                }
                Err(error) => tracing::error!(%error, "the RADIUS spool's write failed"),
            }
        }
        let db = Arc::clone(&conn);
        let head = match tokio::task::spawn_blocking(move || head(&db)).await {
            Ok(Ok(head)) => head,
            Ok(Err(error)) => {
                tracing::error!(error = %crate::text::chain(&error), "the RADIUS spool cannot be read");
                None
            }
            Err(_) => None,
        };
        let Some((id, bytes, queued_at)) = head else {
            match queue.recv().await {
                Some(order) => pending.push(order),
                None => return,
            }
            continue;
        };
        match deliver(&servers, &bytes, queued_at).await {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                let db = Arc::clone(&conn);
                if let Ok(Err(error)) = tokio::task::spawn_blocking(move || delete(&db, id)).await {
                    tracing::error!(error = %crate::text::chain(&error), "a delivered accounting request cannot be taken off the spool; it will be sent again");
                }
            }
            Err(error) => {
                tracing::warn!(error = %crate::text::chain(&error), retry_secs = backoff.as_secs(), "RADIUS accounting waits on disk for a server");
                // Orders keep going to disk meanwhile.
                let until = tokio::time::Instant::now() + backoff;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => break,
                        order = queue.recv() => match order {
                            Some(order) => {
                                let db = Arc::clone(&conn);
                                let _ = tokio::task::spawn_blocking(move || write(&db, &[order])).await;
                            }
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sends one spooled request (with Acct-Delay-Time, how long it waited) and waits for its
/// Accounting-Response.
async fn deliver(
    servers: &Servers,
    bytes: &[u8],
    queued_at: i64,
) -> Result<(), super::ExchangeError> {
    let mut attributes = codec::decode_attributes(bytes)?;
    let delay = chrono::Utc::now().timestamp().saturating_sub(queued_at);
    attributes.push(Attribute::integer(
        dict::ACCT_DELAY_TIME,
        u32::try_from(delay.max(0)).unwrap_or(u32::MAX),
    ));
    let secret = servers.secret.clone();
    servers
        .exchange(
            |identifier| {
                let packet = Packet {
                    code: dict::ACCOUNTING_REQUEST,
                    identifier,
                    authenticator: [0; 16],
                    attributes: attributes.clone(),
                };
                let bytes = codec::encode_signed_request(packet, &secret, false)?;
                let mut authenticator = [0; 16];
                authenticator.copy_from_slice(&bytes[4..codec::HEADER_LEN]);
                Ok((bytes, authenticator))
            },
            false,
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: i64) -> SpooledSession {
        SpooledSession {
            session_id: id,
            user: "CODE".to_owned(),
            acct_session_id: format!("{id:016X}"),
            mac: "02:00:00:00:00:01".to_owned(),
            ip: "192.0.2.10".to_owned(),
            interim_secs: 60,
            base: Some((u64::from(u32::MAX) + 7, 3)),
            started_at: Some(1_700_000_000),
        }
    }

    /// The store migrates a new database to the schema with the spool's tables; the spool
    /// keeps sessions and hands requests back oldest first, as written.
    #[test]
    fn requests_come_back_in_the_order_written_and_sessions_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        drop(crate::store::Store::open(&path).expect("opens"));
        let conn = Connection::open(&path).expect("opens");
        let conn = Mutex::new(conn);
        let first = vec![Attribute::integer(dict::ACCT_STATUS_TYPE, dict::ACCT_START)];
        let second = vec![Attribute::integer(dict::ACCT_STATUS_TYPE, dict::ACCT_STOP)];
        write(
            &conn,
            &[
                Order::Put(session(1)),
                Order::Put(session(2)),
                Order::Send(first.clone()),
                Order::Send(second.clone()),
                Order::Forget(2),
            ],
        )
        .expect("writes");
        let kept = load_sessions(&conn.lock().expect("lock")).expect("loads");
        assert_eq!(kept, vec![session(1)], "64-bit baselines survive");
        let (id, bytes, _) = head(&conn).expect("reads").expect("a head");
        assert_eq!(codec::decode_attributes(&bytes).expect("decodes"), first);
        delete(&conn, id).expect("deletes");
        let (id, bytes, _) = head(&conn).expect("reads").expect("a head");
        assert_eq!(codec::decode_attributes(&bytes).expect("decodes"), second);
        delete(&conn, id).expect("deletes");
        assert!(head(&conn).expect("reads").is_none());
    }
}
