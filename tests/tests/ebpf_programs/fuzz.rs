//! Random frames, seeded: the programs never fail, never count a packet as more than it
//! carries, and bill nothing without a session.

use hotspotd_common::Usage;
use hotspotd_tests::frames::{ETH_HLEN, Mac, XorShift, client_mac, random_frame};

use crate::harness::{Harness, Program, TC_ACT_SHOT, TC_ACT_UNSPEC, to_u64, unlimited};

/// Clients the random frames are steered to; the rest come from random MACs.
const RANDOM_CLIENTS: [Mac; 4] = [
    client_mac(20),
    client_mac(21),
    client_mac(22),
    client_mac(23),
];

/// What the programs did with a batch of random frames.
struct RandomRun {
    harness: Harness,
    /// Frames dropped, by both programs together.
    dropped: u64,
    frames: u64,
}

/// Feeds `FRAMES` seeded random frames to both programs, with `granted` (a subset of
/// [`RANDOM_CLIENTS`]) holding sessions without limits. Checks every verdict is "pass" or
/// "drop" and that nothing is counted as more than it carries.
fn run_random_frames(granted: &[Mac]) -> RandomRun {
    const FRAMES: usize = 100_000;
    const RANDOM_FRAME_MAX_LEN: usize = 200;
    const SEED: u64 = 0x5eed_f00d_cafe_0001;
    let harness = Harness::with_sessions(granted);
    let mut rng = XorShift::new(SEED);
    let mut l3_bytes_fed = 0;
    let mut dropped = 0;
    for _ in 0..FRAMES {
        let frame = random_frame(&mut rng, &RANDOM_CLIENTS, RANDOM_FRAME_MAX_LEN);
        for program in Program::BOTH {
            match harness.verdict(program, &frame, None) {
                TC_ACT_UNSPEC => {}
                TC_ACT_SHOT => dropped += 1,
                other => panic!(
                    "{} returned {other}, neither pass nor drop: frame {frame:02x?}",
                    program.name()
                ),
            }
        }
        l3_bytes_fed += to_u64(frame.len() - ETH_HLEN);
    }

    let total = total_usage(&harness);
    let frames = to_u64(FRAMES);
    // No packet is counted as more than it carries past its Ethernet header, nor twice.
    assert!(
        total.up_bytes + total.up_local_bytes + total.up_dropped_bytes <= l3_bytes_fed,
        "{total:?}"
    );
    assert!(
        total.down_bytes + total.down_local_bytes + total.down_dropped_bytes <= l3_bytes_fed,
        "{total:?}"
    );
    assert!(
        total.up_packets <= frames && total.down_packets <= frames,
        "{total:?}"
    );
    assert!(
        total.up_packets + total.down_packets + total.dropped_packets <= 2 * frames,
        "{total:?}"
    );
    // Every drop is accounted to its client and its reason, and only drops are.
    let stats = harness.stats();
    assert_eq!(total.dropped_packets, dropped, "{total:?}");
    assert_eq!(
        stats.dropped_no_session + stats.dropped_budget + stats.dropped_deadline,
        dropped,
        "{stats:?}"
    );
    // The fuzzing reached every outcome, or the bounds above prove little.
    assert!(
        total.up_local_bytes > 0 && total.down_local_bytes > 0,
        "{total:?}"
    );
    assert!(
        stats.malformed > frames / 10 && stats.non_ip > frames / 10,
        "{stats:?}"
    );
    assert_eq!(
        stats.untracked, 0,
        "USAGE never fills with a handful of clients"
    );
    RandomRun {
        harness,
        dropped,
        frames,
    }
}

fn total_usage(harness: &Harness) -> Usage {
    harness
        .all_usage()
        .iter()
        .fold(Usage::default(), |sum, (_, usage)| sum.merged(usage))
}

#[test]
fn random_frames_never_fail_and_never_overcount() {
    let RandomRun {
        mut harness,
        dropped,
        frames,
    } = run_random_frames(&RANDOM_CLIENTS);

    let total = total_usage(&harness);
    assert!(
        total.up_packets > frames / 10 && total.down_packets > frames / 10,
        "{total:?}"
    );
    // Sessions without limits never drop; only the random MACs without one are.
    for client in RANDOM_CLIENTS {
        let usage = harness
            .usage(client)
            .expect("a steered client has an entry");
        assert_eq!(
            (
                usage.up_dropped_bytes,
                usage.down_dropped_bytes,
                usage.dropped_packets
            ),
            (0, 0, 0),
            "{client:02x?} has a session: nothing of it is dropped"
        );
        assert_eq!(harness.grant_of(client), Some(unlimited()), "untouched");
    }
    assert!(dropped > 0, "random MACs without a session are dropped");
    let stats = harness.stats();
    assert_eq!((stats.dropped_budget, stats.dropped_deadline), (0, 0));
    assert_eq!(harness.take_events().drain(), Vec::new(), "no event");
}

#[test]
fn random_frames_without_sessions_are_never_billed() {
    let RandomRun {
        mut harness,
        dropped,
        frames,
    } = run_random_frames(&[]);

    let total = total_usage(&harness);
    assert_eq!(
        (
            total.up_bytes,
            total.up_packets,
            total.down_bytes,
            total.down_packets
        ),
        (0, 0, 0, 0),
        "nothing passes as billable without a session: {total:?}"
    );
    assert!(dropped > frames / 10, "{dropped} of {frames}");
    assert!(
        total.up_dropped_bytes > 0 && total.down_dropped_bytes > 0,
        "{total:?}"
    );
    let stats = harness.stats();
    assert_eq!(stats.dropped_no_session, dropped, "{stats:?}");
    assert_eq!(harness.take_events().drain(), Vec::new(), "no event");
}
