//! The kernel hotspotd runs on: on one with every eBPF feature it needs (Linux 5.12 or newer)
//! it starts; on an older one it refuses with one sentence naming what is missing and the
//! kernel that has it, and no verifier log. Run here on the machine's kernel, and by the kernel
//! matrix (scripts/kernel-matrix.sh) on Debian's 5.10, 6.1 and 6.12 under QEMU.

use anyhow::{Context as _, Result, ensure};
use hotspotd::bpf::probe::{self, Feature, MINIMUM_KERNEL, Probe};
use hotspotd_tests::{Daemon, LAN_IFACE, Lan};

/// The first kernel with TCX links; before it the programs sit in a `clsact` qdisc.
const TCX: (u32, u32) = (6, 6);

/// The running kernel's release and its (major, minor).
fn kernel() -> Result<(String, (u32, u32))> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("read /proc/sys/kernel/osrelease")?
        .trim()
        .to_owned();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(str::parse::<u32>);
    let (Some(Ok(major)), Some(Ok(minor))) = (numbers.next(), numbers.next()) else {
        anyhow::bail!("cannot read a version from the kernel release '{release}'");
    };
    Ok((release, (major, minor)))
}

#[test]
fn an_old_kernel_is_refused_in_one_sentence_and_a_new_one_starts_and_attaches() -> Result<()> {
    let (release, version) = kernel()?;
    let probes: Vec<(Feature, Probe)> = Feature::ALL
        .into_iter()
        .map(|feature| (feature, probe::probe(feature)))
        .collect();
    println!("kernel {release}: probes {probes:?}");
    // Each feature is found exactly on the kernels the README's table says have it (Debian
    // backports nothing of these into the kernels the matrix boots).
    for (feature, found) in &probes {
        let expected = if version >= feature.since() {
            Probe::Has
        } else {
            Probe::Lacks
        };
        ensure!(
            *found == expected,
            "kernel {release}: {feature:?} probed {found:?}, expected {expected:?} (since {:?})",
            feature.since()
        );
    }

    let lan = Lan::new(1)?;
    if version >= MINIMUM_KERNEL {
        let daemon = Daemon::start(&lan, &[])?;
        ensure!(
            !daemon.log().contains("lacks"),
            "kernel {release}: the daemon logged a missing feature:\n{}",
            daemon.log()
        );
        // Attached the way this kernel allows: TCX links, or a clsact qdisc where TCX is missing.
        let qdiscs = lan
            .gateway
            .command("tc")
            .args(["qdisc", "show", "dev", LAN_IFACE])
            .output()
            .context("run tc qdisc show")?;
        let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
        let clsact = qdiscs.contains("clsact");
        ensure!(
            clsact == (version < TCX),
            "kernel {release}: {} expected, qdiscs on {LAN_IFACE}:\n{qdiscs}",
            if version < TCX { "clsact" } else { "TCX" }
        );
        println!(
            "kernel {release}: hotspotd started, attached with {}",
            if clsact { "clsact" } else { "TCX" }
        );
        return Ok(());
    }
    let (status, log) = Daemon::start_expecting_exit(&lan, &[])?;
    ensure!(!status.success(), "kernel {release}: hotspotd exited 0");
    // What the table says this kernel lacks, in the daemon's words.
    let sentence = probe::decide(&release, |feature| version >= feature.since())
        .expect_err("a kernel older than the minimum lacks a feature")
        .to_string();
    ensure!(
        log.contains(&sentence),
        "kernel {release}: the refusal is not the one sentence '{sentence}'; log:\n{log}"
    );
    // No verifier log: its lines start with instruction numbers ("0: (b7) r0 = 0").
    ensure!(
        !log.contains("processed") && !log.contains("R0"),
        "kernel {release}: the refusal carries a verifier log:\n{log}"
    );
    println!("kernel {release}: refused with '{sentence}'");
    Ok(())
}
