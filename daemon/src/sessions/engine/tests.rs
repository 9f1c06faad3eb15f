//! The rules of `shared/docs/sessions.md`, one test (or a few) each, on a fake clock.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::{
    clock::Step,
    sessions::data::{InvalidSession, SessionData, SessionType},
};

const A: MacAddr = MacAddr([0xaa, 0, 0, 0, 0, 1]);
const B: MacAddr = MacAddr([0xaa, 0, 0, 0, 0, 2]);
const DAY_SECS: u64 = 86_400;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

/// A fake clock: `advance` is time passing (both clocks move), `jump_wall` is NTP stepping the
/// wall clock alone.
struct Clock(Now);

impl Clock {
    fn new() -> Self {
        Self(Now {
            mono: Duration::from_secs(5_000),
            wall: t0(),
        })
    }

    fn now(&self) -> Now {
        self.0
    }

    fn advance(&mut self, by: Duration) -> Now {
        self.0.mono += by;
        self.0.wall += TimeDelta::from_std(by).unwrap();
        self.0
    }

    fn secs(&mut self, secs: u64) -> Now {
        self.advance(Duration::from_secs(secs))
    }

    fn millis(&mut self, millis: u64) -> Now {
        self.advance(Duration::from_millis(millis))
    }

    fn jump_wall(&mut self, by: TimeDelta) -> Now {
        self.0.wall += by;
        self.0
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        bytes_per_mb: 1_000_000,
        queue_order: QueueOrder::OldestFirst,
        idle_pause: None,
        global_down_mbits: 100,
        global_up_mbits: 50,
    }
}

/// A 60 s / 10 MB session at 5/2 Mbit/s, created at `t0`, never started.
fn session(id: SessionId, mac: MacAddr, kind: SessionType) -> Session {
    Session {
        id,
        mac,
        data: SessionData {
            time_secs: if kind.counts_time() { 60 } else { 0 },
            data_mb: if kind.counts_data() { 10.0 } else { 0.0 },
            ..crate::sessions::data::example(kind, t0())
        },
    }
}

fn with(mut session: Session, change: impl FnOnce(&mut SessionData)) -> Session {
    change(&mut session.data);
    session
}

fn engine(config: EngineConfig, sessions: impl IntoIterator<Item = Session>, now: Now) -> Engine {
    let mut engine = Engine::new(config);
    for session in sessions {
        assert_eq!(engine.add(session, now), Ok(Vec::new()));
    }
    engine
}

fn data(engine: &Engine, id: SessionId) -> &SessionData {
    &engine.session(id).unwrap().data
}

fn grant(effects: &[Effect]) -> &Grant {
    let mut grants = effects.iter().filter_map(|effect| match effect {
        Effect::Grant(grant) => Some(grant),
        _ => None,
    });
    let first = grants.next().expect("one Grant");
    assert!(grants.next().is_none(), "exactly one Grant in {effects:?}");
    first
}

fn ev(event: Event) -> Effect {
    Effect::Event(event)
}

fn own_grant(id: SessionId, mac: MacAddr, run_for_secs: Option<u64>, bytes: Option<u64>) -> Grant {
    Grant {
        mac,
        session_id: id,
        bytes_left: bytes,
        run_for: run_for_secs.map(Duration::from_secs),
        down_mbits: 5,
        up_mbits: 2,
    }
}

// ---- rule 1: consumed per type; rule 8: out of sessions ----

#[test]
fn time_session_is_consumed_by_time_then_the_client_is_out() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());

    assert_eq!(
        engine.connect(A, clock.now()),
        Ok(vec![
            Effect::Grant(own_grant(1, A, Some(60), None)),
            Effect::Save(1),
            ev(Event::SessionStarted { id: 1, mac: A }),
            ev(Event::ClientConnected {
                mac: A,
                session_id: 1
            }),
        ])
    );
    assert_eq!(engine.tick(clock.secs(59)), vec![]);
    assert_eq!(data(&engine, 1).time_cons, 59);
    assert_eq!(
        engine.tick(clock.secs(1)),
        vec![
            Effect::Save(1),
            ev(Event::SessionConsumed { id: 1, mac: A }),
            Effect::Revoke { mac: A },
            ev(Event::ClientDisconnected { mac: A }),
        ]
    );
    assert_eq!(engine.client_state(A), ClientState::Disconnected);
    assert_eq!(engine.running_session(A), None);
    assert_eq!(
        engine.state_of(1, clock.now()),
        Some(SessionState::Consumed)
    );
    assert_eq!(engine.tick(clock.secs(10)), vec![], "a session ends once");
}

#[test]
fn data_session_is_consumed_by_data_not_time() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Data)], clock.now());
    let effects = engine.connect(A, clock.now()).unwrap();
    assert_eq!(grant(&effects), &own_grant(1, A, None, Some(10_000_000)));

    assert_eq!(engine.tick(clock.secs(10 * DAY_SECS)), vec![]);
    assert_eq!(
        data(&engine, 1).time_cons,
        0,
        "rule 2: time does not move for data"
    );
    assert_eq!(engine.traffic(A, 9_999_999, true, clock.now()), vec![]);
    assert_eq!(
        engine.traffic(A, 1, true, clock.now()),
        vec![
            Effect::Save(1),
            ev(Event::SessionConsumed { id: 1, mac: A }),
            Effect::Revoke { mac: A },
            ev(Event::ClientDisconnected { mac: A }),
        ]
    );
    assert!((data(&engine, 1).data_cons - 10.0).abs() < 1e-9);
}

/// The sums of per-poll MB that land one float step under the session's 5 MB.
const UNDER_BY_A_STEP: [u64; 4] = [2_187_000, 147_000, 2_364_000, 302_000];

#[test]
fn a_data_session_spent_to_the_byte_ends_and_the_next_takes_over() {
    for sorted in [false, true] {
        let mut clock = Clock::new();
        let five_mb = |session| with(session, |data| data.data_mb = 5.0);
        let mut engine = engine(
            config(),
            [
                five_mb(session(1, A, SessionType::Data)),
                session(2, A, SessionType::Data),
            ],
            clock.now(),
        );
        let effects = engine.connect(A, clock.now()).unwrap();
        assert_eq!(grant(&effects).bytes_left, Some(5_000_000));
        let mut last = Vec::new();
        for bytes in UNDER_BY_A_STEP {
            let now = clock.millis(100);
            last = if sorted {
                engine.traffic_sorted(&[(A, bytes)], now)
            } else {
                engine.traffic(A, bytes, true, now)
            };
        }
        assert!(
            last.contains(&ev(Event::SessionConsumed { id: 1, mac: A })),
            "the budget is spent to the byte: {last:?}"
        );
        assert_eq!(grant(&last).session_id, 2);
        assert_eq!(grant(&last).bytes_left, Some(10_000_000));
        assert_eq!(
            data(&engine, 1).data_cons.to_bits(),
            5.0_f64.to_bits(),
            "exactly"
        );
        assert_eq!(engine.running_session(A), Some(2));
    }
}

#[test]
fn one_byte_short_of_the_budget_is_not_consumed() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Data)], clock.now());
    engine.connect(A, clock.now()).unwrap();
    assert_eq!(engine.traffic(A, 9_999_999, true, clock.millis(10)), vec![]);
    assert_eq!(engine.state_of(1, clock.now()), Some(SessionState::Running));
    let effects = engine.set_config(config(), clock.now());
    assert_eq!(effects, vec![], "nothing changed");
    engine.pause(A, clock.now()).unwrap();
    let effects = engine.connect(A, clock.now()).unwrap();
    assert_eq!(
        grant(&effects).bytes_left,
        Some(1),
        "one byte left, exactly"
    );
}

#[test]
fn a_new_mb_keeps_the_mb_consumed_and_counts_their_bytes_anew() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Data)], clock.now());
    engine.connect(A, clock.now()).unwrap();
    let _ = engine.traffic(A, 4_000_000, true, clock.millis(10));
    let binary = EngineConfig {
        bytes_per_mb: 1_048_576,
        ..config()
    };
    let effects = engine.set_config(binary, clock.now());
    assert_eq!(grant(&effects).bytes_left, Some(6 * 1_048_576));
    assert_eq!(
        data(&engine, 1).data_cons.to_bits(),
        4.0_f64.to_bits(),
        "exactly"
    );
    let effects = engine.traffic(A, 6 * 1_048_576, true, clock.millis(10));
    assert!(effects.contains(&ev(Event::SessionConsumed { id: 1, mac: A })));
}

#[test]
fn time_or_data_ends_on_either() {
    let mut clock = Clock::new();
    let mut by_data = engine(
        config(),
        [session(1, A, SessionType::TimeOrData)],
        clock.now(),
    );
    by_data.connect(A, clock.now()).unwrap();
    clock.secs(30);
    let effects = by_data.traffic(A, 10_000_000, true, clock.now());
    assert!(effects.contains(&ev(Event::SessionConsumed { id: 1, mac: A })));
    assert_eq!(data(&by_data, 1).time_cons, 30, "time counts too");

    let mut by_time = engine(
        config(),
        [session(1, A, SessionType::TimeOrData)],
        clock.now(),
    );
    by_time.connect(A, clock.now()).unwrap();
    let effects = by_time.traffic(A, 1_000_000, true, clock.now());
    assert!(effects.is_empty());
    let effects = by_time.tick(clock.secs(60));
    assert!(effects.contains(&ev(Event::SessionConsumed { id: 1, mac: A })));
    assert!(
        (data(&by_time, 1).data_cons - 1.0).abs() < 1e-9,
        "data counts too"
    );
}

// ---- rule 2: which counters move ----

#[test]
fn data_is_ignored_for_a_time_session() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());
    engine.connect(A, clock.now()).unwrap();
    assert_eq!(
        engine.traffic(A, 50_000_000_000, true, clock.secs(5)),
        vec![]
    );
    assert!(data(&engine, 1).data_cons.abs() < f64::EPSILON);
    assert_eq!(data(&engine, 1).time_cons, 5);
}

// ---- rule 3: started_at ----

#[test]
fn started_at_is_set_once_at_the_first_start() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());
    assert_eq!(data(&engine, 1).started_at, None);
    engine.connect(A, clock.secs(100)).unwrap();
    let started = t0() + TimeDelta::seconds(100);
    assert_eq!(data(&engine, 1).started_at, Some(started));

    engine.pause(A, clock.secs(10)).unwrap();
    let effects = engine.connect(A, clock.secs(1_000)).unwrap();
    assert!(effects.contains(&ev(Event::SessionResumed { id: 1, mac: A })));
    assert_eq!(data(&engine, 1).started_at, Some(started));

    let sessions = engine.sessions().cloned().collect();
    let restored = RestoredClient {
        mac: A,
        state: ClientState::Connected,
        session_id: Some(1),
        pause_reason: None,
        credit: Duration::from_secs(3),
        billed: Vec::new(),
    };
    let _ = engine.restore(sessions, vec![restored], clock.secs(7));
    assert_eq!(data(&engine, 1).started_at, Some(started));
}

// ---- rule 4: expiry ----

/// A 60 s time session valid 1 day: expires at start + 1 day + 60 s.
fn expiring(id: SessionId) -> Session {
    with(session(id, A, SessionType::Time), |data| {
        data.exp_days = Some(1);
    })
}

#[test]
fn expiry_ends_a_running_session_whatever_is_left() {
    let mut clock = Clock::new();
    let one_day_data = with(session(1, A, SessionType::Data), |data| {
        data.exp_days = Some(1);
    });
    let mut engine = engine(config(), [one_day_data], clock.now());
    let effects = engine.connect(A, clock.now()).unwrap();
    assert_eq!(grant(&effects).run_for, Some(Duration::from_secs(DAY_SECS)));
    let _ = engine.traffic(A, 1_000_000, true, clock.now());

    assert_eq!(engine.tick(clock.secs(DAY_SECS - 1)), vec![]);
    assert_eq!(
        engine.tick(clock.secs(1)),
        vec![
            Effect::Save(1),
            ev(Event::SessionExpired { id: 1, mac: A }),
            Effect::Revoke { mac: A },
            ev(Event::ClientDisconnected { mac: A }),
        ]
    );
    assert_eq!(engine.state_of(1, clock.now()), Some(SessionState::Expired));
    assert!(data(&engine, 1).data_cons < 10.0, "it had data left");
}

#[test]
fn expiry_runs_while_paused() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [expiring(1)], clock.now());
    engine.connect(A, clock.now()).unwrap();
    engine.pause(A, clock.secs(10)).unwrap();

    assert_eq!(engine.tick(clock.secs(DAY_SECS + 49)), vec![]);
    assert_eq!(engine.state_of(1, clock.now()), Some(SessionState::Paused));
    assert_eq!(
        engine.tick(clock.secs(1)),
        vec![
            Effect::Save(1),
            ev(Event::SessionExpired { id: 1, mac: A }),
            Effect::Revoke { mac: A },
            ev(Event::ClientDisconnected { mac: A }),
        ]
    );
    assert_eq!(
        data(&engine, 1).time_cons,
        10,
        "time did not run while paused"
    );
    assert_eq!(engine.client_state(A), ClientState::Disconnected);
}

#[test]
fn paused_client_whose_session_expired_connects_to_the_next() {
    let mut clock = Clock::new();
    let next = with(session(2, A, SessionType::Time), |data| {
        data.created_at = t0() + TimeDelta::hours(1);
    });
    let mut engine = engine(config(), [expiring(1), next], clock.now());
    engine.connect(A, clock.now()).unwrap();
    engine.pause(A, clock.secs(10)).unwrap();
    assert_eq!(
        engine.tick(clock.secs(2 * DAY_SECS)),
        vec![Effect::Save(1), ev(Event::SessionExpired { id: 1, mac: A }),]
    );
    assert_eq!(
        engine.client_state(A),
        ClientState::Paused,
        "the pause holds"
    );
    assert_eq!(
        engine.state_of(2, clock.now()),
        Some(SessionState::Available)
    );
    assert_eq!(
        engine.connect(A, clock.now()),
        Ok(vec![
            Effect::Grant(own_grant(2, A, Some(60), None)),
            Effect::Save(2),
            ev(Event::SessionStarted { id: 2, mac: A }),
        ])
    );
}

#[test]
fn expiry_is_checked_on_connect_without_a_tick() {
    let mut clock = Clock::new();
    let next = with(session(2, A, SessionType::Time), |data| {
        data.created_at = t0() + TimeDelta::hours(1);
    });
    let mut engine = engine(config(), [expiring(1), next], clock.now());
    engine.connect(A, clock.now()).unwrap();
    engine.pause(A, clock.secs(10)).unwrap();
    assert_eq!(
        engine.connect(A, clock.secs(2 * DAY_SECS)),
        Ok(vec![
            Effect::Save(1),
            ev(Event::SessionExpired { id: 1, mac: A }),
            Effect::Grant(own_grant(2, A, Some(60), None)),
            Effect::Save(2),
            ev(Event::SessionStarted { id: 2, mac: A }),
        ])
    );
    assert_eq!(
        engine.tick(clock.now()),
        vec![],
        "the expiry is not reported twice"
    );
}

#[test]
fn expiry_is_checked_on_traffic_without_a_tick() {
    let mut clock = Clock::new();
    let one_day_data = with(session(1, A, SessionType::Data), |data| {
        data.exp_days = Some(1);
    });
    let mut engine = engine(config(), [one_day_data], clock.now());
    engine.connect(A, clock.now()).unwrap();
    let effects = engine.traffic(A, 0, true, clock.secs(DAY_SECS));
    assert_eq!(
        effects[..2],
        [Effect::Save(1), ev(Event::SessionExpired { id: 1, mac: A })]
    );
    assert_eq!(engine.tick(clock.now()), vec![]);
}

#[test]
fn a_session_never_started_never_expires() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [expiring(1)], clock.now());
    assert_eq!(engine.tick(clock.secs(3_650 * DAY_SECS)), vec![]);
    assert_eq!(
        engine.state_of(1, clock.now()),
        Some(SessionState::Available)
    );
    let effects = engine.connect(A, clock.now()).unwrap();
    assert_eq!(grant(&effects).run_for, Some(Duration::from_mins(1)));
}

// ---- rule 5: time, on the monotonic clock only ----

#[test]
fn fractional_ticks_do_not_drift() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());
    engine.connect(A, clock.now()).unwrap();
    for _ in 0..10 {
        assert_eq!(engine.tick(clock.millis(250)), vec![]);
    }
    assert_eq!(data(&engine, 1).time_cons, 2);
    assert_eq!(engine.sessions[&1].carry, Duration::from_millis(500));

    let long = with(session(2, B, SessionType::Time), |data| {
        data.time_secs = 3_600;
    });
    engine.add(long, clock.now()).unwrap();
    engine.connect(B, clock.now()).unwrap();
    for _ in 0..3_000 {
        let _ = engine.tick(clock.millis(333));
    }
    assert_eq!(data(&engine, 2).time_cons, 999, "3,000 × 0.333 s");
    assert_eq!(engine.sessions[&2].carry, Duration::ZERO);
}

#[test]
fn pausing_keeps_the_fraction_for_the_resume() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());
    engine.connect(A, clock.now()).unwrap();
    engine.pause(A, clock.millis(750)).unwrap();
    assert_eq!(data(&engine, 1).time_cons, 0);

    let effects = engine.connect(A, clock.secs(3_600)).unwrap();
    assert_eq!(grant(&effects).run_for, Some(Duration::from_millis(59_250)));
    let _ = engine.tick(clock.millis(250));
    assert_eq!(
        data(&engine, 1).time_cons,
        1,
        "0.75 s + 0.25 s, the paused hour not billed"
    );
}

#[test]
fn a_late_tick_clamps_time_cons_and_chains() {
    let mut clock = Clock::new();
    let next = with(session(2, A, SessionType::Time), |data| {
        data.created_at = t0() + TimeDelta::hours(1);
    });
    let mut engine = engine(
        config(),
        [session(1, A, SessionType::Time), next],
        clock.now(),
    );
    engine.connect(A, clock.now()).unwrap();
    let effects = engine.tick(clock.secs(3_600));
    assert_eq!(data(&engine, 1).time_cons, 60, "never above time_secs");
    assert_eq!(engine.running_session(A), Some(2));
    assert_eq!(
        data(&engine, 2).time_cons,
        0,
        "the late hour is not billed to the next"
    );
    assert_eq!(grant(&effects).run_for, Some(Duration::from_mins(1)));
}

#[test]
fn wall_clock_jumps_do_not_change_time_consumed() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());
    engine.connect(A, clock.now()).unwrap();
    let _ = engine.tick(clock.secs(10));
    clock.jump_wall(-TimeDelta::days(5 * 365));
    let _ = engine.tick(clock.secs(10));
    assert_eq!(
        data(&engine, 1).time_cons,
        20,
        "five years back: nothing refunded"
    );
    clock.jump_wall(TimeDelta::hours(3));
    let _ = engine.tick(clock.secs(10));
    clock.jump_wall(TimeDelta::days(20 * 365));
    assert_eq!(engine.tick(clock.secs(10)), vec![]);
    assert_eq!(
        data(&engine, 1).time_cons,
        40,
        "hours and years ahead: nothing billed"
    );
}

/// Expiry is wall time by definition (rule 4): given a wall time past it, the engine ends the
/// session, though no time was consumed. (The daemon's clock hands a step of the system
/// clock to `shift_wall` first; see the next test.)
#[test]
fn a_forward_wall_jump_can_expire_a_session() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [expiring(1)], clock.now());
    engine.connect(A, clock.now()).unwrap();
    clock.jump_wall(TimeDelta::days(2));
    let effects = engine.tick(clock.secs(1));
    assert!(effects.contains(&ev(Event::SessionExpired { id: 1, mac: A })));
    assert_eq!(data(&engine, 1).time_cons, 1);
}

/// A step of the wall clock handed to `shift_wall` moves `started_at`, `created_at` and the
/// expiry with it: years forward expire nothing, hours back extend nothing.
#[test]
fn a_shifted_wall_step_expires_nothing_early_and_extends_nothing() {
    let mut clock = Clock::new();
    let one_day_data = with(session(1, A, SessionType::Data), |data| {
        data.exp_days = Some(1);
    });
    let mut engine = engine(
        config(),
        [one_day_data, session(2, A, SessionType::Data)],
        clock.now(),
    );
    engine.connect(A, clock.now()).unwrap();
    let started_at = data(&engine, 1).started_at.unwrap();
    let expires_at = data(&engine, 1).expires_at().unwrap();

    let years = TimeDelta::days(20 * 365);
    clock.jump_wall(years);
    let saves = engine.shift_wall(Step {
        by: years,
        after: None,
    });
    assert_eq!(saves, vec![Effect::Save(1), Effect::Save(2)]);
    assert_eq!(data(&engine, 1).started_at, Some(started_at + years));
    assert_eq!(data(&engine, 2).created_at, t0() + years);
    assert_eq!(engine.tick(clock.secs(1)), vec![], "nothing expires");

    clock.jump_wall(-TimeDelta::hours(3));
    let _ = engine.shift_wall(Step {
        by: -TimeDelta::hours(3),
        after: None,
    });
    let moved_expiry = expires_at + years - TimeDelta::hours(3);
    assert_eq!(data(&engine, 1).expires_at(), Some(moved_expiry));
    // It expires when its real validity runs out, counted from its start.
    let left = (moved_expiry - clock.now().wall).to_std().unwrap();
    assert_eq!(
        left,
        (expires_at - started_at - TimeDelta::seconds(1))
            .to_std()
            .unwrap()
    );
    let effects = engine.tick(clock.advance(left));
    assert!(effects.contains(&ev(Event::SessionExpired { id: 1, mac: A })));
}

/// A step that covers only moments after a boundary (the clock was set after a reboot)
/// leaves the earlier ones where they are.
#[test]
fn a_shift_after_a_boundary_moves_only_later_moments() {
    let clock = Clock::new();
    let old = with(expiring(1), |data| {
        data.created_at = t0() - TimeDelta::days(1);
    });
    let mut engine = engine(
        config(),
        [old, session(2, A, SessionType::Data)],
        clock.now(),
    );
    let saves = engine.shift_wall(Step {
        by: TimeDelta::hours(2),
        after: Some(t0() - TimeDelta::hours(1)),
    });
    assert_eq!(saves, vec![Effect::Save(2)]);
    assert_eq!(data(&engine, 1).created_at, t0() - TimeDelta::days(1));
    assert_eq!(data(&engine, 2).created_at, t0() + TimeDelta::hours(2));
}

// ---- rule 6: data ----

#[test]
fn data_uses_bytes_per_mb_and_only_while_running() {
    let mut clock = Clock::new();
    let mebibyte = EngineConfig {
        bytes_per_mb: 1_048_576,
        ..config()
    };
    let mut engine = engine(mebibyte, [session(1, A, SessionType::Data)], clock.now());
    let effects = engine.connect(A, clock.now()).unwrap();
    assert_eq!(grant(&effects).bytes_left, Some(10 * 1_048_576));
    assert_eq!(
        engine.traffic(A, 3 * 1_048_576, true, clock.secs(1)),
        vec![]
    );
    assert!((data(&engine, 1).data_cons - 3.0).abs() < f64::EPSILON);

    engine.pause(A, clock.now()).unwrap();
    assert_eq!(
        engine.traffic(A, 5 * 1_048_576, true, clock.secs(1)),
        vec![]
    );
    assert!(
        (data(&engine, 1).data_cons - 3.0).abs() < f64::EPSILON,
        "paused: not billed"
    );
    let effects = engine.connect(A, clock.now()).unwrap();
    assert_eq!(grant(&effects).bytes_left, Some(7 * 1_048_576));
    assert_eq!(
        engine.traffic(B, 1_000, true, clock.now()),
        vec![],
        "unknown client"
    );
}

// ---- rule 7: the queue ----

#[test]
fn the_next_session_starts_at_once_with_its_own_speed() {
    let mut clock = Clock::new();
    let fast_data = with(session(2, A, SessionType::Data), |data| {
        data.created_at = t0() + TimeDelta::minutes(1);
        data.down_mbits = 20;
        data.up_mbits = 10;
    });
    let mut engine = engine(
        config(),
        [session(1, A, SessionType::Time), fast_data],
        clock.now(),
    );
    engine.connect(A, clock.now()).unwrap();
    assert_eq!(
        engine.tick(clock.secs(60)),
        vec![
            Effect::Save(1),
            ev(Event::SessionConsumed { id: 1, mac: A }),
            Effect::Grant(Grant {
                mac: A,
                session_id: 2,
                bytes_left: Some(10_000_000),
                run_for: None,
                down_mbits: 20,
                up_mbits: 10,
            }),
            Effect::Save(2),
            ev(Event::SessionStarted { id: 2, mac: A }),
        ]
    );
    assert_eq!(engine.client_state(A), ClientState::Connected);
    assert_eq!(engine.running(), vec![2]);
}

/// Sessions 1..=3 created an hour apart, added out of order, plus 4 created with 2 (a tie).
fn queue(order: QueueOrder, clock: &Clock) -> Engine {
    let at = |id: SessionId, hours: i64| {
        with(session(id, A, SessionType::Time), |data| {
            data.created_at = t0() + TimeDelta::hours(hours);
        })
    };
    let config = EngineConfig {
        queue_order: order,
        ..config()
    };
    engine(
        config,
        [at(3, 2), at(1, 0), at(4, 1), at(2, 1)],
        clock.now(),
    )
}

#[test]
fn oldest_first_takes_the_oldest_and_ties_by_lower_id() {
    let mut clock = Clock::new();
    let mut engine = queue(QueueOrder::OldestFirst, &clock);
    let mut order = Vec::new();
    engine.connect(A, clock.now()).unwrap();
    while let Some(id) = engine.running_session(A) {
        order.push(id);
        let _ = engine.tick(clock.secs(60));
    }
    assert_eq!(order, [1, 2, 4, 3]);
}

#[test]
fn newest_first_takes_the_newest_and_ties_by_higher_id() {
    let mut clock = Clock::new();
    let mut engine = queue(QueueOrder::NewestFirst, &clock);
    let mut order = Vec::new();
    engine.connect(A, clock.now()).unwrap();
    while let Some(id) = engine.running_session(A) {
        order.push(id);
        let _ = engine.tick(clock.secs(60));
    }
    assert_eq!(order, [3, 4, 2, 1]);
}

#[test]
fn a_started_session_goes_before_older_unstarted_ones() {
    let mut clock = Clock::new();
    for order in [QueueOrder::OldestFirst, QueueOrder::NewestFirst] {
        let mut engine = queue(order, &clock);
        let half_used = with(session(9, A, SessionType::Time), |data| {
            data.created_at = t0() + TimeDelta::hours(5);
            data.started_at = Some(t0());
            data.time_cons = 30;
        });
        engine.add(half_used, clock.now()).unwrap();
        assert_eq!(engine.state_of(9, clock.now()), Some(SessionState::Paused));
        let effects = engine.connect(A, clock.secs(1)).unwrap();
        assert_eq!(grant(&effects).session_id, 9, "{order:?}");
        assert!(effects.contains(&ev(Event::SessionResumed { id: 9, mac: A })));
    }
}

// ---- rule 9: pause and resume ----

#[test]
fn pause_freezes_time_and_data_and_connect_resumes_the_same_session() {
    let mut clock = Clock::new();
    let mut engine = engine(
        config(),
        [session(1, A, SessionType::TimeOrData)],
        clock.now(),
    );
    engine.connect(A, clock.now()).unwrap();
    let _ = engine.traffic(A, 2_000_000, true, clock.secs(10));
    assert_eq!(
        engine.pause(A, clock.now()),
        Ok(vec![
            Effect::Revoke { mac: A },
            Effect::Save(1),
            ev(Event::SessionPaused {
                id: 1,
                mac: A,
                reason: PauseReason::Operator
            }),
        ])
    );
    assert_eq!(engine.tick(clock.secs(100)), vec![]);
    assert_eq!(engine.traffic(A, 5_000_000, true, clock.now()), vec![]);
    assert_eq!(engine.state_of(1, clock.now()), Some(SessionState::Paused));
    assert_eq!(
        engine.clients().collect::<Vec<_>>(),
        [(A, ClientState::Paused, Some(1))]
    );
    assert_eq!(data(&engine, 1).time_cons, 10);
    assert!((data(&engine, 1).data_cons - 2.0).abs() < f64::EPSILON);

    assert_eq!(
        engine.connect(A, clock.now()),
        Ok(vec![
            Effect::Grant(own_grant(1, A, Some(50), Some(8_000_000))),
            Effect::Save(1),
            ev(Event::SessionResumed { id: 1, mac: A }),
        ])
    );
    assert_eq!(
        engine.connect(A, clock.now()),
        Ok(vec![]),
        "already running"
    );
}

fn idle_engine(clock: &Clock) -> Engine {
    let idle = EngineConfig {
        idle_pause: Some(Duration::from_mins(1)),
        ..config()
    };
    let long = with(session(1, A, SessionType::Time), |data| {
        data.time_secs = 3_600;
    });
    engine(idle, [long], clock.now())
}

#[test]
fn idle_clients_pause_and_resume_on_their_next_packet() {
    let mut clock = Clock::new();
    let mut engine = idle_engine(&clock);
    engine.connect(A, clock.now()).unwrap();
    let _ = engine.traffic(A, 0, true, clock.secs(30));
    assert_eq!(
        engine.tick(clock.secs(59)),
        vec![],
        "59 s since the last packet"
    );
    assert_eq!(
        engine.tick(clock.secs(1)),
        vec![
            Effect::Revoke { mac: A },
            Effect::Save(1),
            ev(Event::SessionPaused {
                id: 1,
                mac: A,
                reason: PauseReason::Idle
            }),
            ev(Event::ClientIdle { mac: A }),
        ]
    );
    assert_eq!(engine.pause_reason(A), Some(PauseReason::Idle));
    assert_eq!(
        engine.traffic(A, 0, false, clock.secs(600)),
        vec![],
        "no activity"
    );
    assert_eq!(data(&engine, 1).time_cons, 90);

    assert_eq!(
        engine.traffic(A, 1_000, true, clock.now()),
        vec![
            Effect::Grant(own_grant(1, A, Some(3_510), None)),
            Effect::Save(1),
            ev(Event::SessionResumed { id: 1, mac: A }),
        ]
    );
    assert_eq!(
        engine.tick(clock.secs(59)),
        vec![],
        "idle counts again from the resume"
    );
    assert_eq!(engine.client_state(A), ClientState::Connected);
}

#[test]
fn idle_counts_from_the_connect() {
    let mut clock = Clock::new();
    let mut engine = idle_engine(&clock);
    engine.connect(A, clock.now()).unwrap();
    let effects = engine.tick(clock.secs(60));
    assert!(effects.contains(&ev(Event::ClientIdle { mac: A })));
}

#[test]
fn handing_over_to_the_next_session_is_not_activity() {
    let mut clock = Clock::new();
    let mut engine = idle_engine(&clock);
    let short = with(session(0, A, SessionType::Time), |data| {
        data.time_secs = 30;
        data.created_at = t0() - TimeDelta::hours(1);
    });
    engine.add(short, clock.now()).unwrap();
    engine.connect(A, clock.now()).unwrap();
    let effects = engine.tick(clock.secs(30));
    assert_eq!(grant(&effects).session_id, 1);
    let effects = engine.tick(clock.secs(30));
    assert!(
        effects.contains(&ev(Event::ClientIdle { mac: A })),
        "60 s since the connect"
    );
}

#[test]
fn an_operator_pause_does_not_resume_on_traffic() {
    let mut clock = Clock::new();
    let mut engine = idle_engine(&clock);
    engine.connect(A, clock.now()).unwrap();
    engine.pause(A, clock.secs(5)).unwrap();
    assert_eq!(engine.traffic(A, 1_000, true, clock.secs(1)), vec![]);
    assert_eq!(engine.client_state(A), ClientState::Paused);

    // An idle pause confirmed by the operator becomes the operator's.
    let mut engine = idle_engine(&clock);
    engine.connect(A, clock.now()).unwrap();
    let _ = engine.tick(clock.secs(60));
    assert_eq!(engine.pause(A, clock.now()), Ok(vec![]));
    assert_eq!(engine.pause_reason(A), Some(PauseReason::Operator));
    assert_eq!(engine.traffic(A, 1_000, true, clock.secs(1)), vec![]);
    assert_eq!(engine.client_state(A), ClientState::Paused);
}

// ---- rule 10: speed ----

#[test]
fn global_speed_sessions_follow_the_global_limits() {
    let clock = Clock::new();
    let global = with(session(1, A, SessionType::Time), |data| {
        data.use_global_speed = true;
        data.down_mbits = 0;
        data.up_mbits = 0;
    });
    let mut engine = engine(
        config(),
        [global, session(2, B, SessionType::Time)],
        clock.now(),
    );
    let effects = engine.connect(A, clock.now()).unwrap();
    assert_eq!(
        (grant(&effects).down_mbits, grant(&effects).up_mbits),
        (100, 50)
    );
    engine.connect(B, clock.now()).unwrap();

    assert_eq!(
        engine.set_config(config(), clock.now()),
        vec![],
        "nothing changed"
    );
    let faster = EngineConfig {
        global_down_mbits: 200,
        global_up_mbits: 80,
        ..config()
    };
    let effects = engine.set_config(faster, clock.now());
    assert_eq!(
        effects,
        vec![Effect::Grant(Grant {
            mac: A,
            session_id: 1,
            bytes_left: None,
            run_for: Some(Duration::from_mins(1)),
            down_mbits: 200,
            up_mbits: 80,
        })],
        "only the global-speed client"
    );
}

#[test]
fn a_new_bytes_per_mb_regrants_data_sessions() {
    let clock = Clock::new();
    let mut engine = engine(
        config(),
        [
            session(1, A, SessionType::Data),
            session(2, B, SessionType::Time),
        ],
        clock.now(),
    );
    engine.connect(A, clock.now()).unwrap();
    engine.connect(B, clock.now()).unwrap();
    let mebibyte = EngineConfig {
        bytes_per_mb: 1_048_576,
        ..config()
    };
    let effects = engine.set_config(mebibyte, clock.now());
    assert_eq!(
        effects,
        vec![Effect::Grant(own_grant(1, A, None, Some(10_485_760)))]
    );
}

#[test]
fn invalid_sessions_are_rejected_with_the_reason() {
    let clock = Clock::new();
    let mut engine = Engine::new(config());
    let no_speed = with(session(1, A, SessionType::Time), |data| data.down_mbits = 0);
    let error = engine.add(no_speed, clock.now()).unwrap_err();
    assert_eq!(
        error,
        EngineError::InvalidSession {
            id: 1,
            source: InvalidSession::NoSpeed {
                down_mbits: 0,
                up_mbits: 2
            }
        }
    );
    // The reason is the source; the chain (what the API answers) says it.
    let shown = crate::text::chain_string(&error);
    assert!(shown.contains("--global-speed"), "{shown}");
    assert!(engine.session(1).is_none());
}

// ---- rule 12: saves on every change of state ----

#[test]
fn every_change_of_state_is_saved() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());
    let mut saves = 0;
    let mut count = |effects: &[Effect]| {
        saves += effects.iter().filter(|e| **e == Effect::Save(1)).count();
    };
    count(&engine.connect(A, clock.now()).unwrap());
    count(&engine.tick(clock.secs(10)));
    count(&engine.pause(A, clock.now()).unwrap());
    count(&engine.connect(A, clock.secs(10)).unwrap());
    count(&engine.tick(clock.secs(50)));
    assert_eq!(saves, 4, "start, pause, resume, consumed");
}

// ---- grants ----

#[test]
fn run_for_is_the_lesser_of_time_left_and_time_to_expiry() {
    let mut clock = Clock::new();
    // Started a day and an hour ago, valid 1 day + 7,200 s: it expires in an hour, with 2 hours
    // of time left.
    let old = with(session(1, A, SessionType::Time), |data| {
        data.time_secs = 7_200;
        data.exp_days = Some(1);
        data.started_at = Some(t0() - TimeDelta::days(1) - TimeDelta::hours(1));
    });
    let mut engine = engine(config(), [old], clock.now());
    let effects = engine.connect(A, clock.secs(600)).unwrap();
    assert_eq!(grant(&effects).run_for, Some(Duration::from_mins(50)));

    let fresh = with(session(2, B, SessionType::Time), |data| {
        data.exp_days = Some(1);
    });
    engine.add(fresh, clock.now()).unwrap();
    let effects = engine.connect(B, clock.now()).unwrap();
    assert_eq!(grant(&effects).run_for, Some(Duration::from_mins(1)));
}

// ---- restore ----

fn half_used(clock: &Clock) -> Vec<Session> {
    let first = with(session(1, A, SessionType::Time), |data| {
        data.started_at = Some(t0() - TimeDelta::hours(1));
        data.time_cons = 20;
    });
    let second = with(session(2, A, SessionType::Data), |data| {
        data.created_at = clock.now().wall;
    });
    vec![first, second]
}

fn running_a(credit: Duration) -> Vec<RestoredClient> {
    vec![RestoredClient {
        mac: A,
        state: ClientState::Connected,
        session_id: Some(1),
        pause_reason: None,
        credit,
        billed: Vec::new(),
    }]
}

#[test]
fn restore_credits_the_time_the_kernel_ran() {
    let clock = Clock::new();
    let mut engine = Engine::new(config());
    let credit = Duration::from_millis(30_500);
    let effects = engine.restore(half_used(&clock), running_a(credit), clock.now());
    assert_eq!(
        effects,
        vec![
            Effect::Grant(Grant {
                run_for: Some(Duration::from_millis(9_500)),
                ..own_grant(1, A, None, None)
            }),
            Effect::Save(1),
        ]
    );
    assert_eq!(data(&engine, 1).time_cons, 50);
    assert_eq!(
        data(&engine, 1).started_at,
        Some(t0() - TimeDelta::hours(1))
    );
    assert_eq!(engine.running(), vec![1]);
}

#[test]
fn restore_after_a_reboot_bills_nothing() {
    let clock = Clock::new();
    let mut engine = Engine::new(config());
    let effects = engine.restore(half_used(&clock), running_a(Duration::ZERO), clock.now());
    assert_eq!(
        effects,
        vec![Effect::Grant(own_grant(1, A, Some(40), None))]
    );
    assert_eq!(data(&engine, 1).time_cons, 20);
}

#[test]
fn restore_chains_a_session_consumed_while_the_daemon_was_down() {
    let clock = Clock::new();
    let mut engine = Engine::new(config());
    let credit = Duration::from_secs(100);
    let effects = engine.restore(half_used(&clock), running_a(credit), clock.now());
    assert_eq!(
        effects,
        vec![
            Effect::Save(1),
            ev(Event::SessionConsumed { id: 1, mac: A }),
            Effect::Grant(own_grant(2, A, None, Some(10_000_000))),
            Effect::Save(2),
            ev(Event::SessionStarted { id: 2, mac: A }),
        ]
    );
    assert_eq!(data(&engine, 1).time_cons, 60);
}

/// What the kernel let through while the daemon was down is billed before the grant: a
/// session that ran out meanwhile ends, and one still running gets only what is left.
#[test]
fn restore_bills_what_the_kernel_passed_before_granting() {
    let clock = Clock::new();
    let sessions = || {
        vec![
            with(session(1, A, SessionType::Data), |data| {
                data.started_at = Some(t0());
                data.data_cons = 4.0;
            }),
            session(2, A, SessionType::Data),
        ]
    };
    let restored = |bytes| {
        vec![RestoredClient {
            billed: vec![(1, bytes)],
            ..running_a(Duration::ZERO).remove(0)
        }]
    };

    let mut engine = Engine::new(config());
    let effects = engine.restore(sessions(), restored(1_500_000), clock.now());
    assert_eq!(grant(&effects).bytes_left, Some(4_500_000));
    assert!((data(&engine, 1).data_cons - 5.5).abs() < 1e-9);

    let mut engine = Engine::new(config());
    let effects = engine.restore(sessions(), restored(6_000_100), clock.now());
    assert_eq!(
        effects,
        vec![
            Effect::Save(1),
            ev(Event::SessionConsumed { id: 1, mac: A }),
            Effect::Grant(own_grant(2, A, None, Some(10_000_000))),
            Effect::Save(2),
            ev(Event::SessionStarted { id: 2, mac: A }),
        ]
    );
    assert!((data(&engine, 1).data_cons - 10.000_1).abs() < 1e-9);
}

#[test]
fn restore_revokes_paused_and_disconnected_clients() {
    let mut clock = Clock::new();
    let mut engine = Engine::new(config());
    let clients = vec![
        RestoredClient {
            mac: B,
            state: ClientState::Disconnected,
            session_id: None,
            pause_reason: None,
            credit: Duration::ZERO,
            billed: Vec::new(),
        },
        RestoredClient {
            mac: A,
            state: ClientState::Paused,
            session_id: Some(1),
            pause_reason: None,
            credit: Duration::from_secs(999),
            billed: Vec::new(),
        },
    ];
    let effects = engine.restore(half_used(&clock), clients, clock.now());
    assert_eq!(
        effects,
        vec![Effect::Revoke { mac: A }, Effect::Revoke { mac: B }]
    );
    assert_eq!(
        data(&engine, 1).time_cons,
        20,
        "a paused session ran nowhere"
    );
    assert_eq!(engine.pause_reason(A), Some(PauseReason::Operator));
    let effects = engine.connect(A, clock.secs(1)).unwrap();
    assert_eq!(grant(&effects).session_id, 1, "resumes the same session");
}

#[test]
fn restore_ends_a_paused_session_that_expired_while_the_box_was_off() {
    let clock = Clock::new();
    let mut engine = Engine::new(config());
    let stale = with(expiring(1), |data| {
        data.started_at = Some(t0() - TimeDelta::days(3));
        data.time_cons = 10;
    });
    let paused = RestoredClient {
        mac: A,
        state: ClientState::Paused,
        session_id: Some(1),
        pause_reason: None,
        credit: Duration::ZERO,
        billed: Vec::new(),
    };
    assert_eq!(
        engine.restore(vec![stale], vec![paused], clock.now()),
        vec![
            Effect::Save(1),
            ev(Event::SessionExpired { id: 1, mac: A }),
            Effect::Revoke { mac: A },
            ev(Event::ClientDisconnected { mac: A }),
        ]
    );
    assert_eq!(engine.client_state(A), ClientState::Disconnected);
}

#[test]
fn restore_keeps_an_idle_pause_that_resumes_on_traffic() {
    let clock = Clock::new();
    let mut engine = Engine::new(config());
    let idle = RestoredClient {
        mac: A,
        state: ClientState::Paused,
        session_id: Some(1),
        pause_reason: Some(PauseReason::Idle),
        credit: Duration::ZERO,
        billed: Vec::new(),
    };
    let _ = engine.restore(half_used(&clock), vec![idle], clock.now());
    assert_eq!(engine.pause_reason(A), Some(PauseReason::Idle));
    let effects = engine.traffic(A, 100, true, clock.now());
    assert_eq!(grant(&effects).session_id, 1);
}

#[test]
fn restore_marks_sessions_that_ended_unused_without_events() {
    let clock = Clock::new();
    let mut engine = Engine::new(config());
    let used_up = with(session(3, B, SessionType::Time), |data| {
        data.started_at = Some(t0() - TimeDelta::days(9));
        data.time_cons = 60;
    });
    let effects = engine.restore(vec![used_up], vec![], clock.now());
    assert_eq!(effects, vec![]);
    assert_eq!(
        engine.state_of(3, clock.now()),
        Some(SessionState::Consumed)
    );
    assert_eq!(
        engine.connect(B, clock.now()),
        Err(EngineError::NoSessionLeft { mac: B })
    );
}

// ---- add, remove, errors ----

#[test]
fn removing_a_running_session_goes_on_with_the_next() {
    let mut clock = Clock::new();
    let next = with(session(2, A, SessionType::Time), |data| {
        data.created_at = t0() + TimeDelta::hours(1);
    });
    let mut engine = engine(
        config(),
        [session(1, A, SessionType::Time), next],
        clock.now(),
    );
    engine.connect(A, clock.now()).unwrap();
    assert_eq!(
        engine.remove(1, clock.secs(5)),
        Ok(vec![
            ev(Event::SessionRemoved { id: 1, mac: A }),
            Effect::Grant(own_grant(2, A, Some(60), None)),
            Effect::Save(2),
            ev(Event::SessionStarted { id: 2, mac: A }),
        ])
    );
    assert_eq!(
        engine.remove(2, clock.secs(5)),
        Ok(vec![
            ev(Event::SessionRemoved { id: 2, mac: A }),
            Effect::Revoke { mac: A },
            ev(Event::ClientDisconnected { mac: A }),
        ])
    );
    assert_eq!(engine.clients().count(), 0, "nothing left of the client");
}

#[test]
fn removing_a_waiting_session_just_drops_it() {
    let clock = Clock::new();
    let mut engine = engine(
        config(),
        [
            session(1, A, SessionType::Time),
            session(2, A, SessionType::Time),
        ],
        clock.now(),
    );
    engine.connect(A, clock.now()).unwrap();
    assert_eq!(
        engine.remove(2, clock.now()),
        Ok(vec![ev(Event::SessionRemoved { id: 2, mac: A })])
    );
    assert!(engine.session(2).is_none());
    assert_eq!(engine.sessions_of(A).map(|s| s.id).collect::<Vec<_>>(), [1]);
    assert_eq!(
        engine.remove(2, clock.now()),
        Err(EngineError::UnknownSession { id: 2 })
    );
}

#[test]
fn errors_say_what_to_do_and_change_nothing() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());
    let error = engine.connect(B, clock.now()).unwrap_err();
    assert_eq!(error, EngineError::NoSessionLeft { mac: B });
    assert!(
        error
            .to_string()
            .contains("hotspotctl session add --mac aa:00:00:00:00:02")
    );

    let error = engine.pause(A, clock.now()).unwrap_err();
    assert_eq!(error, EngineError::NotConnected { mac: A });
    assert!(error.to_string().contains("hotspotctl connect"), "{error}");

    let error = engine
        .add(session(1, B, SessionType::Data), clock.now())
        .unwrap_err();
    assert_eq!(error, EngineError::DuplicateSession { id: 1 });
    assert_eq!(engine.session(1).unwrap().mac, A);
    assert!(matches!(
        engine.remove(7, clock.now()),
        Err(EngineError::UnknownSession { id: 7 })
    ));

    // Connected, its session just ran out, nothing next: refused, and the tick ends it.
    engine.connect(A, clock.now()).unwrap();
    clock.secs(60);
    assert_eq!(
        engine.connect(A, clock.now()),
        Err(EngineError::NoSessionLeft { mac: A })
    );
    assert_eq!(engine.client_state(A), ClientState::Connected);
    assert!(
        engine
            .tick(clock.now())
            .contains(&ev(Event::ClientDisconnected { mac: A }))
    );
}

#[test]
fn states_as_hotspotctl_shows_them() {
    let mut clock = Clock::new();
    let mut engine = engine(
        config(),
        [
            session(1, A, SessionType::Time),
            session(2, A, SessionType::Time),
            expiring(3),
        ],
        clock.now(),
    );
    let state = |engine: &Engine, id, now| engine.state_of(id, now).unwrap();
    assert_eq!(state(&engine, 1, clock.now()), SessionState::Available);
    engine.connect(A, clock.now()).unwrap();
    assert_eq!(state(&engine, 1, clock.now()), SessionState::Running);
    assert_eq!(state(&engine, 2, clock.now()), SessionState::Available);
    let _ = engine.tick(clock.secs(120));
    assert_eq!(state(&engine, 1, clock.now()), SessionState::Consumed);
    engine.pause(A, clock.now()).unwrap();
    assert_eq!(state(&engine, 2, clock.now()), SessionState::Paused);
    assert_eq!(engine.state_of(99, clock.now()), None);
    assert_eq!(
        serde_json::to_value(SessionState::Available).unwrap(),
        "available"
    );
    assert_eq!(
        serde_json::to_value(ClientState::Disconnected).unwrap(),
        "disconnected"
    );
}

#[test]
fn events_serialise_with_their_name() {
    let event = Event::SessionPaused {
        id: 4,
        mac: A,
        reason: PauseReason::Idle,
    };
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        serde_json::json!({"event": "session_paused", "id": 4, "mac": "aa:00:00:00:00:01", "reason": "idle"})
    );
    let connected = Event::ClientConnected {
        mac: A,
        session_id: 4,
    };
    assert_eq!(
        serde_json::to_value(&connected).unwrap()["event"],
        "client_connected"
    );
}

// ---- scale ----

fn mac(index: u32) -> MacAddr {
    let [high, upper, lower, low] = index.to_be_bytes();
    MacAddr([2, 0, high, upper, lower, low])
}

/// 10,000 connected clients: one tick visits each once (per-client indexes, no scan of all
/// sessions per client).
#[test]
fn ten_thousand_clients_tick_in_one_pass() {
    let mut clock = Clock::new();
    let mut engine = Engine::new(config());
    for n in 0..10_000_u32 {
        let id = SessionId::from(n);
        let long = with(session(id, mac(n), SessionType::Time), |data| {
            data.time_secs = 3_600;
        });
        engine.add(long, clock.now()).unwrap();
        engine
            .add(
                session(id + 100_000, mac(n), SessionType::Time),
                clock.now(),
            )
            .unwrap();
        engine.connect(mac(n), clock.now()).unwrap();
    }
    assert_eq!(engine.running().len(), 10_000);
    assert_eq!(engine.tick(clock.secs(1)), vec![]);
    assert!(
        engine
            .sessions()
            .filter(|s| s.id < 100_000)
            .all(|s| s.data.time_cons == 1)
    );
}

#[test]
fn traffic_of_many_clients_at_once_is_traffic_of_each_in_turn() {
    const C: MacAddr = MacAddr([0xaa, 0, 0, 0, 0, 3]);
    const D: MacAddr = MacAddr([0xaa, 0, 0, 0, 0, 4]);
    const E: MacAddr = MacAddr([0xaa, 0, 0, 0, 0, 5]);
    let build = |clock: &Clock| {
        let idle = EngineConfig {
            idle_pause: Some(Duration::from_mins(1)),
            ..config()
        };
        let mut engine = engine(
            idle,
            [
                // A: a data session about to run out, and the next one.
                session(1, A, SessionType::Data),
                session(2, A, SessionType::Data),
                // B: a long time session, runs on.
                with(session(3, B, SessionType::Time), |data| {
                    data.time_secs = 3_600;
                }),
                // C: will be idle, then resumes on traffic.
                with(session(4, C, SessionType::Time), |data| {
                    data.time_secs = 3_600;
                }),
                // D: paused by the operator: traffic changes nothing.
                with(session(5, D, SessionType::TimeOrData), |data| {
                    data.time_secs = 3_600;
                }),
            ],
            clock.now(),
        );
        for mac in [A, B, C, D] {
            engine.connect(mac, clock.now()).unwrap();
        }
        engine.pause(D, clock.now()).unwrap();
        engine
    };
    let mut clock = Clock::new();
    let mut one_by_one = build(&clock);
    let mut at_once = build(&clock);
    // A and B stay active (A uses half its first session); C goes idle.
    let now = clock.secs(30);
    for engine in [&mut one_by_one, &mut at_once] {
        let _ = engine.traffic(A, 5_000_000, true, now);
        let _ = engine.traffic(B, 10, true, now);
    }
    let now = clock.secs(31);
    assert_eq!(one_by_one.tick(now), at_once.tick(now));
    assert_eq!(one_by_one.client_state(C), ClientState::Paused);

    let now = clock.millis(1_500);
    // E is unknown; 5 MB more end A's first session.
    let traffic = [(A, 5_000_000), (B, 1_000), (C, 10), (D, 500), (E, 7)];
    let mut expected = Vec::new();
    for (mac, bytes) in traffic {
        expected.extend(one_by_one.traffic(mac, bytes, true, now));
    }
    assert_eq!(at_once.traffic_sorted(&traffic, now), expected);
    assert!(expected.contains(&ev(Event::SessionConsumed { id: 1, mac: A })));
    assert!(expected.contains(&ev(Event::SessionResumed { id: 4, mac: C })));
    for id in 1..=5 {
        assert_eq!(data(&at_once, id), data(&one_by_one, id), "session {id}");
    }
    for mac in [A, B, C, D, E] {
        assert_eq!(at_once.client_state(mac), one_by_one.client_state(mac));
        assert_eq!(
            at_once.running_session(mac),
            one_by_one.running_session(mac)
        );
    }
    assert_eq!(at_once.tick(clock.secs(5)), one_by_one.tick(clock.now()));
}

#[test]
fn a_moved_session_keeps_what_it_consumed_and_its_old_client_goes_on_with_the_next() {
    let mut clock = Clock::new();
    let mut engine = engine(
        config(),
        [
            session(1, A, SessionType::TimeOrData),
            session(2, A, SessionType::Time),
        ],
        clock.now(),
    );
    let _ = engine.connect(A, clock.now()).unwrap();
    let _ = engine.traffic(A, 3_000_000, true, clock.secs(10));
    let effects = engine.move_session(1, B, clock.millis(500)).unwrap();
    assert_eq!(
        effects[0],
        Effect::Save(1),
        "the moved session is saved first"
    );
    assert_eq!(
        grant(&effects).session_id,
        2,
        "A goes on with its own next session at once"
    );
    assert_eq!(engine.session(1).unwrap().mac, B);
    assert_eq!(
        data(&engine, 1).time_cons,
        10,
        "time credited up to the move"
    );
    assert_eq!(
        engine.running_bytes_left(A),
        None,
        "A runs a time session now"
    );
    assert!((data(&engine, 1).data_cons - 3.0).abs() < 1e-9, "data kept");
    assert_eq!(engine.sessions_of(A).map(|s| s.id).collect::<Vec<_>>(), [2]);
    assert_eq!(
        engine.client_state(B),
        ClientState::Disconnected,
        "not connected by the move"
    );
    let effects = engine.connect(B, clock.now()).unwrap();
    let granted = grant(&effects);
    assert_eq!(
        (
            granted.mac,
            granted.session_id,
            granted.bytes_left,
            granted.run_for
        ),
        (B, 1, Some(7_000_000), Some(Duration::from_millis(49_500))),
        "B runs it with exactly what is left, the half second carried included"
    );
    assert_eq!(
        engine.move_session(9, B, clock.now()),
        Err(EngineError::UnknownSession { id: 9 })
    );
    assert_eq!(
        engine.move_session(1, B, clock.now()),
        Ok(vec![]),
        "already B's"
    );
}

// ---- change (a RADIUS CoA) ----

#[test]
fn a_change_credits_the_running_session_and_replaces_its_grant_at_once() {
    let mut clock = Clock::new();
    let mut engine = engine(config(), [session(1, A, SessionType::Time)], clock.now());
    engine.connect(A, clock.now()).expect("connects");
    let now = clock.secs(10);
    let effects = engine
        .change(1, now, |data, data_cons_bytes| {
            assert_eq!(data.time_cons, 10, "credited up to now first");
            assert_eq!(data_cons_bytes, 0);
            SessionData {
                time_secs: data.time_cons + 300,
                down_mbits: 9,
                ..data.clone()
            }
        })
        .expect("changes");
    assert_eq!(effects[0], Effect::Save(1));
    let grant = grant(&effects);
    assert_eq!(grant.run_for, Some(Duration::from_mins(5)));
    assert_eq!(grant.down_mbits, 9);
    assert_eq!(data(&engine, 1).time_secs, 310);

    // A change that leaves nothing ends the session, and the client is out.
    let now = clock.secs(1);
    let effects = engine
        .change(1, now, |data, _| SessionData {
            time_secs: data.time_cons,
            ..data.clone()
        })
        .expect("changes");
    assert!(
        effects.contains(&ev(Event::SessionConsumed { id: 1, mac: A })),
        "{effects:?}"
    );
    assert_eq!(engine.running_session(A), None);

    // An invalid record is refused and changes nothing.
    assert!(matches!(
        engine.change(1, now, |data, _| SessionData {
            down_mbits: 0,
            use_global_speed: false,
            ..data.clone()
        }),
        Err(EngineError::InvalidSession { id: 1, .. })
    ));
    assert_eq!(
        engine.change(9, now, |data, _| data.clone()),
        Err(EngineError::UnknownSession { id: 9 })
    );
}

// ---- ended sessions leave the engine (history is the store's) ----

#[test]
fn ended_sessions_are_handed_over_once_and_forgotten() {
    let mut clock = Clock::new();
    let one_day = |session| with(session, |data| data.exp_days = Some(1));
    let mut engine = engine(
        config(),
        [
            session(1, A, SessionType::Time),
            one_day(session(2, A, SessionType::Data)),
            session(3, B, SessionType::Time),
        ],
        clock.now(),
    );
    assert!(engine.take_ended().is_empty(), "nothing ended yet");
    let _ = engine.connect(A, clock.now()).unwrap();
    // Session 1 is consumed by time; 2 takes over and expires a day later.
    let effects = engine.tick(clock.secs(60));
    assert!(effects.contains(&ev(Event::SessionConsumed { id: 1, mac: A })));
    let taken = engine.take_ended();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].session.id, 1);
    assert_eq!(taken[0].end, SessionEnd::Consumed);
    assert_eq!(taken[0].session.data.time_cons, 60, "its last record");
    assert_eq!(engine.session(1), None);
    assert!(engine.take_ended().is_empty(), "handed over once");
    assert_eq!(engine.running_session(A), Some(2));

    let effects = engine.tick(clock.secs(DAY_SECS));
    assert!(effects.contains(&ev(Event::SessionExpired { id: 2, mac: A })));
    let taken = engine.take_ended();
    assert_eq!(
        taken
            .iter()
            .map(|ended| (ended.session.id, ended.end))
            .collect::<Vec<_>>(),
        vec![(2, SessionEnd::Expired)]
    );
    assert_eq!(
        engine.client(A),
        Some((ClientState::Disconnected, None)),
        "its client stays, with nothing left"
    );
    assert_eq!(engine.sessions_of(A).count(), 0);
    assert_eq!(engine.held(), 1, "B's session stays");
    assert_eq!(engine.sessions_of(B).count(), 1);
}

#[test]
fn a_session_that_arrives_over_is_handed_over_and_a_removed_one_is_not() {
    let clock = Clock::new();
    let used_up = with(session(1, A, SessionType::Time), |data| {
        data.started_at = Some(t0());
        data.time_cons = 60;
    });
    let mut engine = engine(
        config(),
        [used_up, session(2, A, SessionType::Time)],
        clock.now(),
    );
    assert_eq!(
        engine.state_of(1, clock.now()),
        Some(SessionState::Consumed)
    );
    let _ = engine.remove(2, clock.now()).unwrap();
    let taken = engine.take_ended();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].session.id, 1);
    assert_eq!(engine.held(), 0);
}

#[test]
fn a_restart_holds_only_what_it_is_given_and_hands_over_what_ended_meanwhile() {
    let mut clock = Clock::new();
    let running = with(session(1, A, SessionType::Time), |data| {
        data.started_at = Some(t0());
        data.time_cons = 50;
    });
    let mut engine = Engine::new(config());
    let effects = engine.restore(
        vec![running, session(2, A, SessionType::Time)],
        vec![RestoredClient {
            mac: A,
            state: ClientState::Connected,
            session_id: Some(1),
            pause_reason: None,
            credit: Duration::from_secs(20),
            billed: Vec::new(),
        }],
        clock.secs(1),
    );
    assert!(effects.contains(&ev(Event::SessionConsumed { id: 1, mac: A })));
    assert_eq!(engine.running_session(A), Some(2), "the next one runs");
    let taken = engine.take_ended();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].session.id, 1);
    assert_eq!(engine.held(), 1);
}

#[test]
fn only_a_client_that_holds_nothing_is_forgotten() {
    let mut clock = Clock::new();
    let mut engine = engine(
        config(),
        [
            session(1, A, SessionType::Time),
            session(2, B, SessionType::Time),
        ],
        clock.now(),
    );
    let _ = engine.connect(A, clock.now()).unwrap();
    assert_eq!(engine.idle_clients().count(), 0);
    assert!(!engine.forget_client(A), "it runs a session");
    assert!(!engine.forget_client(B), "it holds one");
    let _ = engine.tick(clock.secs(60));
    let _ = engine.take_ended();
    assert_eq!(engine.idle_clients().collect::<Vec<_>>(), vec![A]);
    assert!(engine.forget_client(A));
    assert_eq!(engine.client(A), None);
    assert_eq!(engine.client_state(A), ClientState::Disconnected);
    assert!(engine.connect(A, clock.now()).is_err(), "nothing to run");
}
