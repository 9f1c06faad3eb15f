//! End to end: the shaper builds, changes, takes over and removes real HTB trees in a
//! namespace, checked with `tc` as an operator would, and real TCP traffic is held to the
//! limits. Needs root (namespaces, tc); CI runs as root.
//!
//! Traffic is classified the way the eBPF programs will do it, through `skb->priority`: a
//! sender in the gateway namespace sets `SO_PRIORITY` to a class id, which HTB reads
//! directly. Forwarded traffic keeps priority 0 and lands in the default class.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd::shaping::{Desired, Leaf, POOL_LOW, Rates, Shaper, ShapingError};
use hotspotd_tests::{
    GATEWAY_LAN_V4, INTERNET_V4, LAN_IFACE, Lan, Netns, TcpSource, WAN_IFACE, tc, wait_for,
};
use nix::sys::socket::{setsockopt, sockopt};

const IFB: &str = "ifb-hotspot";

/// TCP payload per Ethernet frame at MTU 1500 with timestamps: HTB counts whole frames, the
/// receiver counts payload.
const GOODPUT_PER_FRAME: f64 = 1448.0 / 1514.0;

fn rates(down_kbit: u64, up_kbit: u64) -> Rates {
    Rates { down_kbit, up_kbit }
}

fn desired(global: Rates, clients: &[(u16, Rates)]) -> Desired {
    Desired {
        global,
        clients: clients.iter().copied().collect(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

/// Sets up a shaper inside the gateway namespace: its netlink socket is opened there and
/// stays there, so the returned shaper can be driven from any thread.
fn setup(rt: &tokio::runtime::Runtime, lan: &Lan, global: Rates) -> Result<Shaper> {
    let handle = rt.handle().clone();
    Ok(lan
        .gateway
        .run(move || handle.block_on(Shaper::setup(LAN_IFACE, IFB, global)))??)
}

fn run(netns: &Netns, program: &str, args: &[&str]) -> Result<String> {
    let output = netns
        .command(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    ensure!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

fn classes(lan: &Lan, dev: &str) -> Result<BTreeMap<String, String>> {
    tc::classes(&lan.gateway, dev)
}

fn qdiscs(lan: &Lan, dev: &str) -> Result<BTreeMap<String, String>> {
    tc::qdiscs(&lan.gateway, dev)
}

fn ifb_exists(lan: &Lan) -> Result<bool> {
    Ok(run(&lan.gateway, "ip", &["-o", "link", "show"])?.contains(&format!(" {IFB}:")))
}

fn assert_contains(haystack: Option<&String>, needle: &str, what: &str) {
    let line = haystack.map_or("(missing)", String::as_str);
    assert!(
        line.contains(needle),
        "{what}: expected `{needle}` in `{line}`"
    );
}

#[test]
fn setup_builds_both_trees_and_teardown_removes_them() -> Result<()> {
    let lan = Lan::new(1)?;
    let rt = runtime()?;
    assert!(!ifb_exists(&lan)?);
    let shaper = setup(&rt, &lan, rates(100_000, 20_000))?;
    // This kernel has no fq_codel; the probe must have noticed.
    let leaf_kind = if run(
        &lan.gateway,
        "tc",
        &["qdisc", "add", "dev", "lo", "root", "fq_codel"],
    )
    .is_ok()
    {
        Leaf::FqCodel
    } else {
        Leaf::Pfifo
    };
    assert_eq!(shaper.leaf(), leaf_kind);
    assert!(ifb_exists(&lan)?, "setup creates {IFB}");
    let link = run(&lan.gateway, "ip", &["-d", "link", "show", IFB])?;
    assert!(link.contains(",UP"), "{IFB} is up: {link}");
    assert!(link.contains("ifb"), "{IFB} is an IFB: {link}");
    assert!(
        link.contains("alias hotspotd"),
        "{IFB} is marked as hotspotd's: {link}"
    );

    for (dev, major, global) in [(LAN_IFACE, 1, "100Mbit"), (IFB, 2, "20Mbit")] {
        let roots = qdiscs(&lan, dev)?;
        assert_contains(roots.get("root"), &format!("qdisc htb {major}: root"), dev);
        assert_contains(roots.get("root"), "default 0xfffe", dev);
        let tree = classes(&lan, dev)?;
        assert_eq!(tree.len(), 2, "{dev}: only parent and default: {tree:?}");
        assert_contains(
            tree.get(&format!("{major}:1")),
            &format!("root rate {global} ceil {global}"),
            dev,
        );
        assert_contains(
            tree.get(&format!("{major}:fffe")),
            &format!("parent {major}:1"),
            dev,
        );
        assert_contains(
            tree.get(&format!("{major}:fffe")),
            &format!("ceil {global}"),
            dev,
        );
        let leaf = format!("qdisc {} ", shaper.leaf());
        assert_contains(roots.get(&format!("{major}:fffe")), &leaf, dev);
    }
    assert_eq!(shaper.current(), &desired(rates(100_000, 20_000), &[]));

    rt.block_on(shaper.teardown())?;
    assert!(!ifb_exists(&lan)?, "teardown deletes the IFB it created");
    let root = qdiscs(&lan, LAN_IFACE)?;
    assert!(
        !root.get("root").is_some_and(|line| line.contains("htb")),
        "teardown removes the LAN tree: {root:?}"
    );
    assert!(classes(&lan, LAN_IFACE)?.is_empty());
    Ok(())
}

#[test]
fn apply_installs_changes_and_removes_client_classes_and_twice_sends_nothing() -> Result<()> {
    let lan = Lan::new(1)?;
    let rt = runtime()?;
    let global = rates(100_000, 20_000);
    let mut shaper = setup(&rt, &lan, global)?;

    let three = desired(
        global,
        &[
            (0x10, rates(5000, 1000)),
            (0x11, rates(10_000, 2000)),
            (0x12, rates(2000, 512)),
        ],
    );
    let before = shaper.requests_sent();
    rt.block_on(shaper.apply(&three))?;
    // A class and a leaf per client and tree.
    assert_eq!(shaper.requests_sent() - before, 3 * 4);
    assert_eq!(shaper.current(), &three);
    let down = classes(&lan, LAN_IFACE)?;
    let up = classes(&lan, IFB)?;
    assert_eq!(down.len(), 5, "{down:?}");
    assert_eq!(up.len(), 5, "{up:?}");
    for (id, ceil) in [("1:10", "5Mbit"), ("1:11", "10Mbit"), ("1:12", "2Mbit")] {
        assert_contains(down.get(id), "parent 1:1", id);
        assert_contains(down.get(id), &format!("ceil {ceil}"), id);
        // A small guarantee (95 kbit/s of a 100 Mbit/s global) so clients borrow from the
        // capped parent instead of bypassing it.
        assert_contains(down.get(id), "rate 95Kbit", id);
    }
    for (id, ceil) in [("2:10", "1Mbit"), ("2:11", "2Mbit"), ("2:12", "512Kbit")] {
        assert_contains(up.get(id), "parent 2:1", id);
        assert_contains(up.get(id), &format!("ceil {ceil}"), id);
    }
    let leaves = qdiscs(&lan, LAN_IFACE)?;
    for parent in ["1:10", "1:11", "1:12"] {
        assert_contains(
            leaves.get(parent),
            &format!("qdisc {} ", shaper.leaf()),
            parent,
        );
    }

    // The same state again: nothing sent, nothing changed.
    let sent = shaper.requests_sent();
    rt.block_on(shaper.apply(&three))?;
    assert_eq!(shaper.requests_sent(), sent, "a second apply sends nothing");
    assert_eq!(classes(&lan, LAN_IFACE)?, down);
    assert_eq!(classes(&lan, IFB)?, up);
    assert_eq!(qdiscs(&lan, LAN_IFACE)?, leaves);

    // One client's download limit: only its LAN class (and leaf) change.
    let mut changed = three.clone();
    changed.clients.insert(0x11, rates(20_000, 2000));
    rt.block_on(shaper.apply(&changed))?;
    let down_after = classes(&lan, LAN_IFACE)?;
    for (id, line) in &down {
        if id == "1:11" {
            assert_contains(down_after.get(id), "ceil 20Mbit", id);
        } else {
            assert_eq!(down_after.get(id), Some(line), "{id} must not change");
        }
    }
    assert_eq!(classes(&lan, IFB)?, up, "the upload tree must not change");
    let leaves_after = qdiscs(&lan, LAN_IFACE)?;
    for (parent, line) in &leaves {
        if parent != "1:11" {
            assert_eq!(leaves_after.get(parent), Some(line), "leaf of {parent}");
        }
    }

    // Everyone gone: parent and default remain.
    rt.block_on(shaper.apply(&desired(global, &[])))?;
    for (dev, major) in [(LAN_IFACE, 1), (IFB, 2)] {
        let left: Vec<String> = classes(&lan, dev)?.into_keys().collect();
        assert_eq!(
            left,
            vec![format!("{major}:1"), format!("{major}:fffe")],
            "{dev}"
        );
    }
    rt.block_on(shaper.teardown())?;
    Ok(())
}

#[test]
fn a_second_setup_takes_over_the_tree_without_touching_it() -> Result<()> {
    let lan = Lan::new(1)?;
    let rt = runtime()?;
    let global = rates(50_000, 10_000);
    let state = desired(
        global,
        &[
            (2, rates(5000, 1000)),
            (0x300, rates(1000, 1000)),
            (0xfffd, rates(64, 64)),
        ],
    );
    let mut first = setup(&rt, &lan, global)?;
    rt.block_on(first.apply(&state))?;
    let down = classes(&lan, LAN_IFACE)?;
    let up = classes(&lan, IFB)?;
    let down_leaves = qdiscs(&lan, LAN_IFACE)?;
    let up_leaves = qdiscs(&lan, IFB)?;
    // A crash: the shaper goes away without teardown and leaves its trees behind.
    drop(first);

    let mut second = setup(&rt, &lan, global)?;
    assert_eq!(second.current(), &state, "the trees were read back");
    // Same classes and the very same leaf qdiscs (their handles would differ had they been
    // replaced): queued packets were not dropped.
    assert_eq!(classes(&lan, LAN_IFACE)?, down);
    assert_eq!(classes(&lan, IFB)?, up);
    assert_eq!(qdiscs(&lan, LAN_IFACE)?, down_leaves);
    assert_eq!(qdiscs(&lan, IFB)?, up_leaves);
    let sent = second.requests_sent();
    rt.block_on(second.apply(&state))?;
    assert_eq!(
        second.requests_sent(),
        sent,
        "nothing left to do after a takeover"
    );

    // A takeover with another global rate re-derives what depends on it.
    drop(second);
    let faster = rates(100_000, 10_000);
    let mut third = setup(&rt, &lan, faster)?;
    // Every download guarantee changes with the global rate, so those classes are unknown
    // (0) until re-sent; upload is as it was.
    let expected = desired(
        faster,
        &[
            (2, rates(0, 1000)),
            (0x300, rates(0, 1000)),
            (0xfffd, rates(0, 64)),
        ],
    );
    assert_eq!(third.current(), &expected);
    let mut state = state;
    state.global = faster;
    rt.block_on(third.apply(&state))?;
    assert_contains(
        classes(&lan, LAN_IFACE)?.get("1:2"),
        "rate 95Kbit ceil 5Mbit",
        "1:2",
    );

    // The IFB was created by the first run; the third owns it too (its alias says so).
    rt.block_on(third.teardown())?;
    assert!(!ifb_exists(&lan)?);
    Ok(())
}

#[test]
fn setup_refuses_a_missing_lan_and_a_device_that_is_not_an_ifb() -> Result<()> {
    let lan = Lan::new(1)?;
    let rt = runtime()?;
    let handle = rt.handle().clone();
    let missing = lan
        .gateway
        .run(move || handle.block_on(Shaper::setup("nosuchlan", IFB, rates(1000, 1000))))?;
    let error = missing.expect_err("no such LAN interface");
    assert!(
        matches!(&error, ShapingError::NoInterface { iface } if iface == "nosuchlan"),
        "{error:?}"
    );
    let handle = rt.handle().clone();
    let not_ifb = lan
        .gateway
        .run(move || handle.block_on(Shaper::setup(LAN_IFACE, WAN_IFACE, rates(1000, 1000))))?;
    let error = not_ifb.expect_err("wan0 is a veth");
    assert!(
        matches!(&error, ShapingError::NotIfb { iface, kind } if iface == WAN_IFACE && kind.as_deref() == Some("veth")),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("network.ifb_interface"),
        "{error}"
    );
    Ok(())
}

/// Client classes (not `X:1`, `X:fffe`) on DEV that are parked spares.
fn parked(lan: &Lan, dev: &str) -> Result<Vec<String>> {
    Ok(classes(lan, dev)?
        .into_iter()
        .filter(|(_, line)| tc::field(line, "ceil") == Some(tc::PARKED_CEIL))
        .map(|(id, _)| id)
        .collect())
}

#[test]
fn a_freed_class_is_parked_and_reused_and_spares_are_made_ahead() -> Result<()> {
    let lan = Lan::new(1)?;
    let rt = runtime()?;
    let global = rates(100_000, 20_000);
    let mut shaper = setup(&rt, &lan, global)?;
    let changed = |minors: &[u16]| minors.iter().copied().collect::<BTreeSet<u16>>();

    // A first client: its classes are created (nothing is parked yet), and a refill starts
    // making spares for the minors above it.
    let one = desired(global, &[(2, rates(5000, 1000))]);
    rt.block_on(shaper.apply_changed(&one, &changed(&[2])))?;
    assert_eq!(shaper.current(), &one);
    assert_contains(classes(&lan, LAN_IFACE)?.get("1:2"), "ceil 5Mbit", "1:2");

    // It leaves: its classes stay, parked, and count as spares.
    let sent = shaper.requests_sent();
    rt.block_on(shaper.apply_changed(&desired(global, &[]), &changed(&[2])))?;
    assert_eq!(shaper.current(), &desired(global, &[]));
    // A class change per tree, and a leaf change where the parked leaf differs (a pfifo's
    // length follows the ceiling; an fq_codel leaf is the same at any rate).
    let requests = shaper.requests_sent() - sent;
    ensure!((2..=4).contains(&requests), "{requests} requests to park");
    assert_contains(classes(&lan, LAN_IFACE)?.get("1:2"), "ceil 8Kbit", "1:2");
    assert_contains(classes(&lan, IFB)?.get("2:2"), "ceil 8Kbit", "2:2");
    assert!(shaper.spare_classes() >= 1);

    // The refill made parked classes for the next 64 minors in both trees, with leaves.
    let made = wait_for(Duration::from_secs(20), || {
        parked(&lan, LAN_IFACE).is_ok_and(|ids| ids.len() > 64)
            && parked(&lan, IFB).is_ok_and(|ids| ids.len() > 64)
    });
    ensure!(made, "spares made ahead: {:?}", parked(&lan, LAN_IFACE)?);
    let leaves = qdiscs(&lan, IFB)?;
    assert_contains(
        leaves.get("2:41"),
        &format!("qdisc {} ", shaper.leaf()),
        "2:41",
    );
    // Let the refill report its last group.
    thread::sleep(Duration::from_millis(200));

    // Two clients arrive: the freed minor and a made one. Both only change classes: no class
    // is created, none deleted.
    let before_down = classes(&lan, LAN_IFACE)?.len();
    let before_up = classes(&lan, IFB)?.len();
    for dev in [LAN_IFACE, IFB] {
        let ids = parked(&lan, dev)?;
        ensure!(
            ids.iter().any(|id| id.ends_with(":2")) && ids.iter().any(|id| id.ends_with(":3")),
            "{dev}: 2 and 3 are parked: {ids:?}"
        );
    }
    let two = desired(global, &[(2, rates(3000, 1000)), (3, rates(7000, 2000))]);
    let sent = shaper.requests_sent();
    rt.block_on(shaper.apply_changed(&two, &changed(&[2, 3])))?;
    assert_eq!(shaper.current(), &two);
    let requests = shaper.requests_sent() - sent;
    ensure!(
        (4..=8).contains(&requests),
        "{requests} requests: two class changes per tree, and the leaves the new ceilings need"
    );
    let down = classes(&lan, LAN_IFACE)?;
    assert_contains(down.get("1:2"), "ceil 3Mbit", "1:2");
    assert_contains(down.get("1:3"), "ceil 7Mbit", "1:3");
    assert_contains(classes(&lan, IFB)?.get("2:3"), "ceil 2Mbit", "2:3");
    let leaves = qdiscs(&lan, LAN_IFACE)?;
    assert_contains(
        leaves.get("1:3"),
        &format!("qdisc {} ", shaper.leaf()),
        "1:3",
    );
    // A refill may be making more spares meanwhile; none went away.
    assert!(classes(&lan, LAN_IFACE)?.len() >= before_down);
    assert!(classes(&lan, IFB)?.len() >= before_up);

    rt.block_on(shaper.teardown())?;
    Ok(())
}

/// `speed.classes_ready`: the shaper makes classes for that many clients ahead, from the start,
/// so that a crowd's sales only change classes; once the crowd holds them, only the last
/// [`POOL_LOW`] spares are made again, not another crowd's worth.
#[test]
fn classes_are_made_ready_for_the_configured_crowd_which_only_changes_them() -> Result<()> {
    const READY: usize = 300;
    let lan = Lan::new(1)?;
    let rt = runtime()?;
    let global = rates(100_000, 20_000);
    let mut shaper = setup(&rt, &lan, global)?;
    shaper.set_classes_ready(READY);
    let filled = wait_for(Duration::from_mins(1), || {
        shaper.tend_spares();
        shaper.spare_classes() >= READY
    });
    ensure!(filled, "{} spares of {READY}", shaper.spare_classes());
    // Refills stop once the pool holds what was asked (one refill may round it up).
    thread::sleep(Duration::from_millis(300));
    shaper.tend_spares();
    let spares = shaper.spare_classes();
    ensure!(
        spares < READY + POOL_LOW,
        "{spares} spares for {READY} asked"
    );
    let before: Vec<BTreeSet<String>> = [LAN_IFACE, IFB]
        .into_iter()
        .map(|dev| parked(&lan, dev).map(BTreeSet::from_iter))
        .collect::<Result<_>>()?;
    ensure!(
        before.iter().all(|ids| ids.len() >= READY),
        "both trees hold the spares"
    );

    let crowd: Vec<(u16, Rates)> = (2..2 + u16::try_from(READY)?)
        .map(|minor| (minor, rates(4000, 1000)))
        .collect();
    for (minor, _) in &crowd {
        ensure!(
            before[0].contains(&format!("1:{minor:x}"))
                && before[1].contains(&format!("2:{minor:x}")),
            "minor {minor:x} was made ahead"
        );
    }
    let all = desired(global, &crowd);
    let minors = crowd.iter().map(|(minor, _)| *minor).collect();
    rt.block_on(shaper.apply_changed(&all, &minors))?;
    assert_eq!(shaper.current(), &all);
    assert_contains(classes(&lan, IFB)?.get("2:12d"), "ceil 1Mbit", "2:12d");

    // With the crowd in, at most the last POOL_LOW spares are made again.
    thread::sleep(Duration::from_secs(1));
    shaper.tend_spares();
    for (dev, ids) in [LAN_IFACE, IFB].into_iter().zip(&before) {
        let count = classes(&lan, dev)?.len();
        // Beside the clients' and spares': the parent and the default class.
        let most = ids.len().max(READY) + POOL_LOW + 2;
        ensure!(
            count <= most,
            "{dev}: {count} classes, at most {most} expected"
        );
    }
    rt.block_on(shaper.teardown())?;
    Ok(())
}

#[test]
fn a_failed_change_is_reported_kept_unknown_and_retried() -> Result<()> {
    let lan = Lan::new(1)?;
    let rt = runtime()?;
    let global = rates(100_000, 20_000);
    let mut shaper = setup(&rt, &lan, global)?;
    rt.block_on(shaper.apply(&desired(global, &[(2, rates(5000, 1000))])))?;
    // Someone removes the upload tree behind the daemon's back.
    run(&lan.gateway, "tc", &["qdisc", "del", "dev", IFB, "root"])?;

    let two = desired(global, &[(2, rates(5000, 1000)), (3, rates(8000, 2000))]);
    let error = rt
        .block_on(shaper.apply(&two))
        .expect_err("the IFB has no HTB root any more");
    match &error {
        ShapingError::Class {
            iface,
            classid,
            source,
            ..
        } => {
            assert_eq!(iface, IFB);
            assert_eq!(classid.to_string(), "2:3");
            assert_eq!(source.errno(), Some(libc::ENOENT));
        }
        other => bail!("expected a class error, got {other:?}"),
    }
    assert!(error.to_string().contains("2:3"), "{error}");
    // Download went in; upload is unknown.
    assert_eq!(
        shaper.current(),
        &desired(global, &[(2, rates(5000, 1000)), (3, rates(8000, 0))])
    );
    assert_contains(classes(&lan, LAN_IFACE)?.get("1:3"), "ceil 8Mbit", "1:3");

    // The next start-up takes over the LAN tree and rebuilds the IFB one; its first apply
    // re-sends exactly what is missing.
    drop(shaper);
    let mut shaper = setup(&rt, &lan, global)?;
    assert_eq!(
        shaper.current(),
        &desired(global, &[(2, rates(5000, 0)), (3, rates(8000, 0))])
    );
    let sent = shaper.requests_sent();
    rt.block_on(shaper.apply(&two))?;
    assert_eq!(
        shaper.requests_sent() - sent,
        4,
        "two IFB classes and their leaves"
    );
    assert_eq!(shaper.current(), &two);
    let up = classes(&lan, IFB)?;
    assert_contains(up.get("2:2"), "ceil 1Mbit", "2:2");
    assert_contains(up.get("2:3"), "ceil 2Mbit", "2:3");
    rt.block_on(shaper.teardown())?;
    Ok(())
}

/// Accepts TCP connections in a namespace and sends zeros on each, with `SO_PRIORITY` set to
/// a class id, until the receiver closes. Stops on drop.
struct PrioritySource {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl PrioritySource {
    fn start(netns: &Netns, at: IpAddr, priority: u32) -> Result<PrioritySource> {
        let listener = netns.run(move || TcpListener::bind(SocketAddr::new(at, 0)))??;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread::spawn(move || send_until_closed(stream, priority));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(PrioritySource { addr, stop })
    }
}

impl Drop for PrioritySource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn send_until_closed(mut stream: TcpStream, priority: u32) {
    let Ok(priority) = i32::try_from(priority) else {
        return;
    };
    if stream.set_nonblocking(false).is_err()
        || setsockopt(&stream, sockopt::Priority, &priority).is_err()
    {
        return;
    }
    let chunk = vec![0u8; 64 * 1024];
    while stream.write_all(&chunk).is_ok() {}
}

/// Connects from `netns` to `from` and returns the goodput in Mbit/s over `window`, after
/// `warmup` for TCP's slow start.
fn receive_mbit(
    netns: &Netns,
    from: SocketAddr,
    warmup: Duration,
    window: Duration,
) -> Result<f64> {
    netns.run(move || -> Result<f64> {
        let mut stream = TcpStream::connect_timeout(&from, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = vec![0u8; 256 * 1024];
        let start = Instant::now();
        let mut counted = 0u64;
        let mut counting_since = None;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                bail!("sender closed early");
            }
            let now = Instant::now();
            match counting_since {
                None if now - start >= warmup => counting_since = Some(now),
                Some(since) if now - since >= window => {
                    #[expect(clippy::cast_precision_loss, reason = "bytes well below 2^52")]
                    let bits = (counted * 8) as f64;
                    return Ok(bits / (now - since).as_secs_f64() / 1e6);
                }
                Some(_) => counted += n as u64,
                None => {}
            }
        }
    })?
}

fn assert_near(measured_mbit: f64, limit_mbit: f64, what: &str) {
    let expected = limit_mbit * GOODPUT_PER_FRAME;
    let error = (measured_mbit - expected).abs() / expected;
    assert!(
        error <= 0.10,
        "{what}: {measured_mbit:.2} Mbit/s, expected {expected:.2} ± 10% (limit {limit_mbit} Mbit/s)"
    );
}

const WARMUP: Duration = Duration::from_millis(700);
const WINDOW: Duration = Duration::from_secs(3);

#[test]
fn forwarded_traffic_without_a_class_is_capped_at_the_global_rate() -> Result<()> {
    let lan = Lan::new(1)?;
    let rt = runtime()?;
    let shaper = setup(&rt, &lan, rates(20_000, 20_000))?;
    // Endless: the receiver hangs up after its window.
    let source = TcpSource::start(
        &lan.internet,
        SocketAddr::new(INTERNET_V4.into(), 0),
        u64::MAX,
    )?;
    let mbit = receive_mbit(&lan.clients[0].netns, source.addr(), WARMUP, WINDOW)?;
    assert_near(mbit, 20.0, "download through the default class");
    rt.block_on(shaper.teardown())?;
    Ok(())
}

#[test]
fn clients_get_their_limit_and_together_no_more_than_the_global_rate() -> Result<()> {
    let lan = Lan::new(2)?;
    let rt = runtime()?;
    let global = rates(20_000, 20_000);
    let mut shaper = setup(&rt, &lan, global)?;
    rt.block_on(shaper.apply(&desired(
        global,
        &[
            (0x20, rates(5000, 1000)),
            (0x21, rates(15_000, 1000)),
            (0x22, rates(15_000, 1000)),
        ],
    )))?;
    let gateway = IpAddr::V4(GATEWAY_LAN_V4);
    let class = |minor: u32| 1 << 16 | minor;

    // Alone, a client gets its own limit, not the global one.
    let slow = PrioritySource::start(&lan.gateway, gateway, class(0x20))?;
    let mbit = receive_mbit(&lan.clients[0].netns, slow.addr, WARMUP, WINDOW)?;
    assert_near(mbit, 5.0, "one client limited to 5 Mbit/s");

    // Two clients at 15 Mbit/s each share the 20 Mbit/s global rate.
    let a = PrioritySource::start(&lan.gateway, gateway, class(0x21))?;
    let b = PrioritySource::start(&lan.gateway, gateway, class(0x22))?;
    let (a_mbit, b_mbit) = thread::scope(|scope| {
        let second = scope.spawn(|| receive_mbit(&lan.clients[1].netns, b.addr, WARMUP, WINDOW));
        let first = receive_mbit(&lan.clients[0].netns, a.addr, WARMUP, WINDOW);
        let second = second
            .join()
            .unwrap_or_else(|_| bail!("the second receiver panicked"));
        anyhow::Ok((first?, second?))
    })?;
    assert_near(
        a_mbit + b_mbit,
        20.0,
        "two 15 Mbit/s clients under a 20 Mbit/s global rate",
    );
    for (mbit, which) in [(a_mbit, "first"), (b_mbit, "second")] {
        assert!(
            mbit <= 15.0 * GOODPUT_PER_FRAME * 1.1,
            "{which} client above its 15 Mbit/s limit: {mbit:.2}"
        );
    }
    rt.block_on(shaper.teardown())?;
    Ok(())
}
