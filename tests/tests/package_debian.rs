//! End to end: the .deb installs, starts and purges cleanly on the Debian releases operators
//! run, Debian 12 (bookworm) and 13 (trixie). Builds the package with `scripts/package.sh
//! --dev`, then `scripts/debian-install.sh` installs it with dpkg in a chroot made from that
//! release's own packages (cached under .cache/debian), checks the files, the group and the
//! configuration, starts the installed daemon as its unit would on this test's LAN, stops it,
//! purges the package and checks that the chroot is as it was before. This test then checks
//! that the purge also freed the LAN: the programs the stopped daemon left attached are gone.
//!
//! Needs root, dpkg-deb, mmdebstrap and, the first time, deb.debian.org. The machine's own dpkg
//! is never touched (tests/tests/package.rs installs on this machine).

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{LAN_IFACE, Lan, wait_for, workspace_root};

/// Builds the test's package with `scripts/package.sh --dev` into `out`; its path.
fn build_deb(out: &std::path::Path) -> Result<PathBuf> {
    let script = workspace_root().join("scripts").join("package.sh");
    let output = Command::new(script)
        .arg("--dev")
        .arg(out)
        .output()
        .context("run scripts/package.sh --dev")?;
    ensure!(
        output.status.success(),
        "scripts/package.sh --dev failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_dir(out)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .context("scripts/package.sh made a .deb")
}

/// Installs, starts, stops and purges the package on `suite` with the LAN of a namespace of
/// its own, then checks that nothing of hotspotd is left on that LAN.
fn installs_starts_and_purges_on(suite: &str) -> Result<()> {
    let script = workspace_root().join("scripts").join("debian-install.sh");
    // The chroot is made here, where the mirror is reachable; the LAN's namespace has no route.
    let made = Command::new(&script)
        .args(["chroot", suite])
        .output()
        .context("run scripts/debian-install.sh chroot")?;
    ensure!(
        made.status.success(),
        "{suite}: scripts/debian-install.sh chroot failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = tempfile::tempdir()?;
    let deb = build_deb(out.path())?;
    let lan = Lan::new(1)?;
    let output: Output = lan
        .gateway
        .command(&script)
        .args(["test", suite])
        .arg(&deb)
        .output()
        .context("run scripts/debian-install.sh test")?;
    let said = String::from_utf8_lossy(&output.stderr);
    eprint!("{said}");
    ensure!(
        output.status.success(),
        "{suite}: scripts/debian-install.sh failed ({}):\n{said}",
        output.status
    );
    ensure!(
        said.contains("nothing left"),
        "{suite}: the script did not get to the purge check:\n{said}"
    );
    // Unpinned links are released by the kernel shortly after the purge, not at once.
    let attached = || {
        lan.gateway
            .run(|| hotspotd::bpf::attached_programs(LAN_IFACE))
            .ok()
            .and_then(Result::ok)
    };
    let detached = wait_for(Duration::from_secs(5), || {
        attached().is_some_and(|names| names.is_empty())
    });
    ensure!(
        detached,
        "{suite}: the purge left programs attached to {LAN_IFACE}: {:?}",
        attached()
    );
    Ok(())
}

#[test]
fn the_deb_installs_starts_and_purges_on_debian_12() -> Result<()> {
    installs_starts_and_purges_on("bookworm")
}

#[test]
fn the_deb_installs_starts_and_purges_on_debian_13() -> Result<()> {
    installs_starts_and_purges_on("trixie")
}
