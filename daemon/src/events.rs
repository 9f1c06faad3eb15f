//! What happens, for whoever listens: the session engine's events and what the watchers of the
//! LAN notice, stamped with their time, fanned out to the API's event stream and to
//! `events.exec`. Side effects: `exec_hooks` runs the configured program once per event.

use std::{process::Stdio, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::{io::AsyncWriteExt as _, sync::broadcast};
use tokio_util::sync::CancellationToken;

use crate::{mac::MacAddr, sessions::engine::Event};

/// One event as listeners see it: `{"at": "...", "event": "session_started", "id": 3, ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// What the watchers beside the sessions notice on the LAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LanEvent {
    /// The LAN bridge learned `mac` behind `to_port` where it had it behind `from_port`: two
    /// devices use the MAC (a clone) or one roamed between bridged radios. `moves` counts this
    /// one and those not reported since the last event for the MAC.
    MacMoved {
        mac: MacAddr,
        from_port: String,
        to_port: String,
        moves: u64,
    },
    /// The kernel saw `to` send from an address `from` sent from before: a client claiming
    /// another's address, or an address DHCP gave to another device. The API names no owner
    /// for it for a minute.
    AddressMoved {
        ip: std::net::IpAddr,
        from: MacAddr,
        to: MacAddr,
    },
    /// `mac` entered one wrong voucher code too many (`everyone`: all devices together did):
    /// someone may be guessing codes; codes are refused for `retry_secs` (docs/vouchers.md).
    VoucherGuessing {
        mac: MacAddr,
        everyone: bool,
        retry_secs: u64,
    },
    /// A voucher with every device slot in use was redeemed on `to`: device `from`, the one
    /// active least recently, lost its slot and is blocked (docs/vouchers.md).
    VoucherMoved {
        voucher: i64,
        from: MacAddr,
        to: MacAddr,
    },
}

/// One [`LanEvent`] as listeners see it: `{"at": "...", "event": "mac_moved", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LanRecord {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: LanEvent,
}

/// Anything listeners are told, as one flat JSON object with its `event` name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Session(EventRecord),
    Lan(LanRecord),
}

impl From<EventRecord> for Record {
    fn from(record: EventRecord) -> Self {
        Self::Session(record)
    }
}

impl From<LanRecord> for Record {
    fn from(record: LanRecord) -> Self {
        Self::Lan(record)
    }
}

/// An event as a client reads it back: the fields of [`EventRecord`] as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine(pub serde_json::Map<String, serde_json::Value>);

/// Events a slow listener may fall behind by before it misses some.
const BACKLOG: usize = 1_024;
/// `events.exec` programs running at once; more events wait for a free one.
const EXEC_AT_ONCE: usize = 4;

/// The fan-out point: the control task sends, listeners subscribe.
#[derive(Clone)]
pub struct Events(broadcast::Sender<Arc<Record>>);

impl Default for Events {
    fn default() -> Self {
        Self(broadcast::channel(BACKLOG).0)
    }
}

impl Events {
    /// Tells every listener; nobody listening is fine.
    pub fn send(&self, record: impl Into<Record>) {
        let _ = self.0.send(Arc::new(record.into()));
    }

    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Record>> {
        self.0.subscribe()
    }
}

/// Runs `program` for every event until `shutdown`, with the event as JSON on its stdin, at
/// most `EXEC_AT_ONCE` at a time, each killed after `timeout`. A program that fails, hangs or
/// cannot start is logged and changes nothing: the daemon never waits for it.
pub async fn exec_hooks(
    program: String,
    timeout: Duration,
    mut events: broadcast::Receiver<Arc<Record>>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(EXEC_AT_ONCE));
    loop {
        let record = tokio::select! {
            () = shutdown.cancelled() => return,
            received = events.recv() => match received {
                Ok(record) => record,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, program, "events.exec is too slow; events were skipped");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let program = program.clone();
        tokio::spawn(async move {
            if let Err(error) = run_hook(&program, &record, timeout).await {
                tracing::warn!(program, %error, "events.exec failed");
            }
            drop(slot);
        });
    }
}

async fn run_hook(program: &str, record: &Record, timeout: Duration) -> Result<(), String> {
    let json = serde_json::to_vec(record).map_err(|error| error.to_string())?;
    let mut child = tokio::process::Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot start it: {error}"))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read its input is not an error.
            let _ = stdin.write_all(&json).await;
            let _ = stdin.write_all(b"\n").await;
        }
        child.wait().await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("it exited with {status}")),
        Ok(Err(error)) => Err(error.to_string()),
        // Dropping the child (kill_on_drop) ends it.
        Err(_) => Err(format!(
            "it ran longer than {} ms and was killed",
            timeout.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    fn record() -> Record {
        EventRecord {
            at: at(),
            event: Event::SessionStarted {
                id: 3,
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
            },
        }
        .into()
    }

    #[test]
    fn a_record_is_one_flat_json_object() {
        let json = serde_json::to_value(record()).expect("serialises");
        assert_eq!(json["event"], "session_started");
        assert_eq!(json["id"], 3);
        assert_eq!(json["mac"], "02:00:00:00:00:01");
        assert_eq!(json["at"], "2027-01-15T08:00:00Z");
        let moved = Record::from(LanRecord {
            at: at(),
            event: LanEvent::MacMoved {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                from_port: "wlan0".to_owned(),
                to_port: "wlan1".to_owned(),
                moves: 1,
            },
        });
        assert_eq!(
            serde_json::to_value(moved).expect("serialises"),
            serde_json::json!({
                "at": "2027-01-15T08:00:00Z",
                "event": "mac_moved",
                "mac": "02:00:00:00:00:01",
                "from_port": "wlan0",
                "to_port": "wlan1",
                "moves": 1,
            })
        );
    }

    /// An executable shell script in `dir`.
    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.to_str().expect("a UTF-8 path").to_owned()
    }

    #[tokio::test]
    async fn a_hook_gets_the_event_on_stdin() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("event.json");
        let hook = script(dir.path(), "hook.sh", &format!("cat > {}", out.display()));
        run_hook(&hook, &record(), Duration::from_secs(5))
            .await
            .expect("the hook runs");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("JSON");
        assert_eq!(written["event"], "session_started");
    }

    #[tokio::test]
    async fn a_hanging_or_failing_hook_is_an_error_not_a_wait() {
        let dir = tempfile::tempdir().expect("temp dir");
        let started = std::time::Instant::now();
        let sleeper = script(dir.path(), "hang.sh", "sleep 30");
        let outcome = run_hook(&sleeper, &record(), Duration::from_millis(200)).await;
        assert!(outcome.expect_err("killed").contains("was killed"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the timeout holds"
        );
        let fail = script(dir.path(), "fail.sh", "exit 3");
        let failed = run_hook(&fail, &record(), Duration::from_secs(5)).await;
        assert!(failed.expect_err("fails").contains("exited"));
        let missing = run_hook("/nonexistent/hook", &record(), Duration::from_secs(5)).await;
        assert!(missing.expect_err("missing").contains("cannot start"));
    }
}
