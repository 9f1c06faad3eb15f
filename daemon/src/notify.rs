//! Tells systemd how the daemon is doing (`sd_notify(3)`): `READY=1` once the API serves,
//! `WATCHDOG=1` while the control task answers, `STOPPING=1` when shutdown starts. Side
//! effects: datagrams to `$NOTIFY_SOCKET`, and one status request to the control task per
//! watchdog ping. Without `$NOTIFY_SOCKET` (a run by hand, most tests) nothing is sent, and
//! without `$WATCHDOG_USEC` nothing is asked.
//!
//! A ping has to be earned: it follows an answer from the control task, which answers between
//! polls. So a control task stuck in a poll (a hung netlink call, a store that never replies)
//! stops the pings, and systemd restarts the daemon after `WatchdogSec=`; the kernel goes on
//! enforcing meanwhile.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::control::{Command, Commands};

/// Says `READY=1` now, and spawns the task that pings the watchdog (if systemd asked for one)
/// and says `STOPPING=1` when `shutdown` fires. Await the handle before the process exits, or
/// `STOPPING=1` may be lost with the runtime.
pub fn serving(commands: Commands, shutdown: CancellationToken) -> JoinHandle<()> {
    send(&[NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(timeout) = watchdog {
        tracing::debug!(timeout_ms = timeout.as_millis(), "systemd watchdog enabled");
    }
    let control_answers = move || {
        let commands = commands.clone();
        async move {
            commands
                .ask(|reply| Command::Status { reply })
                .await
                .is_ok()
        }
    };
    tokio::spawn(supervise(watchdog, control_answers, shutdown, send))
}

/// Pings every half `watchdog` while `alive` answers true within that half, until `shutdown`;
/// then says `STOPPING=1`. Every message goes through `send`.
async fn supervise<Answered: Future<Output = bool>>(
    watchdog: Option<Duration>,
    mut alive: impl FnMut() -> Answered,
    shutdown: CancellationToken,
    mut send: impl FnMut(&[NotifyState]),
) {
    if let Some(timeout) = watchdog {
        // Half the timeout, as sd_watchdog_enabled(3) advises: one slow answer costs a ping,
        // not the process.
        let period = timeout / 2;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                answer = tokio::time::timeout(period, alive()) => match answer {
                    Ok(true) => send(&[NotifyState::Watchdog]),
                    // The control task has ended; shutdown is under way.
                    Ok(false) => break,
                    Err(_) => tracing::warn!(
                        waited_ms = period.as_millis(),
                        "the control task did not answer; withholding the watchdog ping"
                    ),
                },
            }
        }
    }
    shutdown.cancelled().await;
    send(&[NotifyState::Stopping]);
}

/// Sends `states` to `$NOTIFY_SOCKET`, if there is one. A failure is logged, not returned:
/// the daemon's work does not depend on systemd hearing about it.
fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(error = %crate::text::chain(&error), "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        sync::{
            Arc, Mutex, PoisonError,
            atomic::{AtomicBool, Ordering},
        },
    };

    use super::*;

    const WATCHDOG: Duration = Duration::from_secs(10);

    /// The messages `supervise` sent, as systemd would read them.
    #[derive(Clone, Default)]
    struct Sent(Arc<Mutex<Vec<String>>>);

    impl Sent {
        fn sink(&self) -> impl FnMut(&[NotifyState]) + use<> {
            let sent = self.0.clone();
            move |states| {
                let text: Vec<String> = states.iter().map(ToString::to_string).collect();
                sent.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(text.join("\n"));
            }
        }

        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
        }
    }

    /// A control task that answers at once while `answering`, and never otherwise.
    fn control(answering: &Arc<AtomicBool>) -> impl FnMut() -> Pin<Box<Answer>> + Send + use<> {
        let answering = Arc::clone(answering);
        move || {
            let answers = answering.load(Ordering::SeqCst);
            Box::pin(async move {
                if !answers {
                    std::future::pending::<()>().await;
                }
                true
            })
        }
    }

    type Answer = dyn Future<Output = bool> + Send;

    #[tokio::test(start_paused = true)]
    async fn pings_at_half_the_timeout_while_the_control_task_answers() {
        let (sent, shutdown) = (Sent::default(), CancellationToken::new());
        let answering = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(supervise(
            Some(WATCHDOG),
            control(&answering),
            shutdown.clone(),
            sent.sink(),
        ));
        // Ticks at 0, 5, 10, 15 and 20 s.
        tokio::time::sleep(WATCHDOG * 2 + Duration::from_millis(1)).await;
        assert_eq!(sent.take(), vec!["WATCHDOG=1"; 5]);

        // Stuck: the pings stop, so systemd would kill the daemon after WATCHDOG.
        answering.store(false, Ordering::SeqCst);
        tokio::time::sleep(WATCHDOG * 3).await;
        assert_eq!(sent.take(), Vec::<String>::new());

        // Unstuck in time (a slow poll): the pings resume.
        answering.store(true, Ordering::SeqCst);
        tokio::time::sleep(WATCHDOG).await;
        let resumed = sent.take();
        assert!(
            !resumed.is_empty(),
            "no ping after the control task answered again"
        );
        assert!(resumed.iter().all(|m| m == "WATCHDOG=1"), "{resumed:?}");

        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(sent.take(), vec!["STOPPING=1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn says_stopping_when_shutdown_starts_even_while_the_control_task_is_stuck() {
        let (sent, shutdown) = (Sent::default(), CancellationToken::new());
        let answering = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(supervise(
            Some(WATCHDOG),
            control(&answering),
            shutdown.clone(),
            sent.sink(),
        ));
        tokio::time::sleep(WATCHDOG / 4).await;
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(sent.take(), vec!["STOPPING=1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_watchdog_only_stopping_is_sent_and_nothing_is_asked() {
        let (sent, shutdown) = (Sent::default(), CancellationToken::new());
        let asked = Arc::new(AtomicBool::new(false));
        let asked_in_probe = Arc::clone(&asked);
        let probe = move || {
            asked_in_probe.store(true, Ordering::SeqCst);
            std::future::ready(true)
        };
        let task = tokio::spawn(supervise(None, probe, shutdown.clone(), sent.sink()));
        tokio::time::sleep(WATCHDOG * 10).await;
        assert_eq!(sent.take(), Vec::<String>::new());
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(sent.take(), vec!["STOPPING=1"]);
        assert!(!asked.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_pinging_once_the_control_task_is_gone() {
        let (sent, shutdown) = (Sent::default(), CancellationToken::new());
        let task = tokio::spawn(supervise(
            Some(WATCHDOG),
            || std::future::ready(false),
            shutdown.clone(),
            sent.sink(),
        ));
        tokio::time::sleep(WATCHDOG * 3).await;
        assert_eq!(sent.take(), Vec::<String>::new());
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(sent.take(), vec!["STOPPING=1"]);
    }
}
