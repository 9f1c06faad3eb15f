//! End to end: the .deb installs, works and purges without a trace. Builds it with
//! `scripts/package.sh --dev` (the debug binaries `cargo build --bins` built, stripped),
//! installs it on this machine with `dpkg -i`, checks where each file went with its owner and
//! mode, the conffile and the group, runs the installed `hotspotd --check-config` on the
//! installed configuration and `systemd-analyze verify` on the installed unit, runs and stops
//! the installed daemon (which leaves its gate in the kernel), then purges it and checks that
//! its prerm released the LAN and that nothing is left.
//!
//! Needs root and dpkg. It refuses to touch a machine where hotspotd is installed or has run
//! for real; a package a crashed run of this test left behind (revision `0debug`) is purged
//! first. Runs of it on one machine take turns (a lock file), as dpkg would refuse the second.

use std::{
    fs::{self, File},
    os::unix::{
        fs::{MetadataExt as _, PermissionsExt as _},
        net::UnixStream,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd_tests::{LAN_IFACE, Lan, units::said_of_hotspotd, wait_for, workspace_root};
use nix::fcntl::{Flock, FlockArg};

const PACKAGE: &str = "hotspotd";
/// The Debian revision `scripts/package.sh --dev` gives its packages.
const TEST_REVISION: &str = "-0debug";

/// What the package installs: path, mode, and the repository file it must equal (if any).
const FILES: [(&str, u32, Option<&str>); 5] = [
    ("/usr/bin/hotspotd", 0o755, None),
    ("/usr/bin/hotspotctl", 0o755, None),
    // Debian 12 looks in /lib/systemd/system; with the merged /usr it is /usr/lib/..., where
    // the package puts it.
    (
        "/lib/systemd/system/hotspotd.service",
        0o644,
        Some("systemd/hotspotd.service"),
    ),
    (
        "/usr/lib/sysusers.d/hotspotd.conf",
        0o644,
        Some("systemd/hotspotd.sysusers"),
    ),
    ("/etc/hotspotd/config.toml", 0o644, Some("config.toml")),
];
/// What the daemon would make at run time, and a purge must take away with the package.
const RUNTIME_PATHS: [&str; 4] = [
    "/etc/hotspotd",
    "/var/lib/hotspotd",
    "/run/hotspotd",
    "/sys/fs/bpf/hotspotd",
];

fn run(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .with_context(|| format!("run {program}"))
}

fn run_ok(program: &str, args: &[&str]) -> Result<String> {
    let output = run(program, args)?;
    ensure!(
        output.status.success(),
        "{program} {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The installed version of hotspotd, if it is installed.
fn installed_version() -> Result<Option<String>> {
    let output = run(
        "dpkg-query",
        &["--show", "--showformat=${Status} ${Version}", PACKAGE],
    )?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .strip_prefix("install ok installed ")
        .map(|version| version.trim().to_owned()))
}

/// A process killed (if still running) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The TCX programs on the gateway's LAN bridge.
fn attached(lan: &Lan) -> Result<Vec<String>> {
    Ok(lan
        .gateway
        .run(|| hotspotd::bpf::attached_programs(LAN_IFACE))??)
}

/// Purges the test's package when dropped, so a failed check leaves nothing installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", PACKAGE]);
    }
}

/// Makes sure this machine is one the test may install on and purge from.
fn claim_the_machine() -> Result<()> {
    match installed_version()? {
        Some(version) if version.ends_with(TEST_REVISION) => {
            run_ok("dpkg", &["--purge", PACKAGE]).context("purge a crashed run's package")?;
        }
        Some(version) => bail!(
            "hotspotd {version} is installed on this machine: this test installs and purges \
             the package, so it refuses to run here"
        ),
        None => {}
    }
    for path in RUNTIME_PATHS {
        ensure!(
            !Path::new(path).exists(),
            "{path} exists: hotspotd has run here for real, and purging the test's package \
             would delete it; remove it by hand to run this test"
        );
    }
    Ok(())
}

/// Builds the package with `scripts/package.sh --dev` into `out`; its path.
fn build_deb(out: &Path) -> Result<PathBuf> {
    let out_dir = out.to_str().context("temporary path is UTF-8")?;
    let script = workspace_root().join("scripts").join("package.sh");
    let script = script.to_str().context("workspace path is UTF-8")?;
    run_ok(script, &["--dev", out_dir])?;
    fs::read_dir(out)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .context("scripts/package.sh made a .deb")
}

/// Every file where it belongs, root's, with its mode and content; the conffile; the group;
/// the binaries run; the unit verifies in place.
fn check_installed() -> Result<()> {
    let root = workspace_root();
    for (path, mode, source) in FILES {
        let meta = fs::metadata(path).with_context(|| format!("{path} is installed"))?;
        ensure!(meta.is_file(), "{path} is a file");
        ensure!(
            meta.permissions().mode() & 0o7777 == mode,
            "{path} has mode {:o}, not {mode:o}",
            meta.permissions().mode() & 0o7777
        );
        ensure!(
            meta.uid() == 0 && meta.gid() == 0,
            "{path} belongs to root:root, not {}:{}",
            meta.uid(),
            meta.gid()
        );
        if let Some(source) = source {
            ensure!(
                fs::read(path)? == fs::read(root.join(source))?,
                "{path} is the repository's {source}"
            );
        }
    }
    let conffiles = run_ok(
        "dpkg-query",
        &["--show", "--showformat=${Conffiles}", PACKAGE],
    )?;
    ensure!(
        conffiles.contains("/etc/hotspotd/config.toml "),
        "the configuration is a conffile, kept across upgrades: {conffiles:?}"
    );
    ensure!(
        nix::unistd::Group::from_name("hotspotd")?.is_some(),
        "postinst created the hotspotd group (systemd-sysusers)"
    );

    run_ok(
        "/usr/bin/hotspotd",
        &["--check-config", "--config", "/etc/hotspotd/config.toml"],
    )?;
    let version = run_ok("/usr/bin/hotspotctl", &["--version"])?;
    ensure!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "hotspotctl --version: {version}"
    );
    // In place, ExecStart= is the installed binary: the unit verifies as a box would see it.
    let verify = run(
        "systemd-analyze",
        &["verify", "--man=no", "/lib/systemd/system/hotspotd.service"],
    )?;
    // Only what verify says of hotspotd's own unit is judged (tests/src/units.rs).
    let ours = said_of_hotspotd(&verify.stdout, &verify.stderr);
    ensure!(
        verify.status.success() && ours.is_empty(),
        "systemd-analyze verify of the installed unit:\n{}",
        ours.join("\n")
    );
    Ok(())
}

/// Runs the installed daemon on the installed configuration in `lan`, whose bridge is the
/// configuration's br-lan: it serves the default socket, then is stopped (SIGTERM, as prerm's
/// `systemctl stop` would), leaving what a purge has to take away: its database, and its
/// programs attached through pinned links (which would block every client with nobody left
/// to sell sessions). A crash leaves the same.
fn run_and_stop_the_installed_daemon(lan: &Lan) -> Result<()> {
    // As the unit's StateDirectory= would; the daemon makes the socket's folder itself.
    fs::create_dir_all("/var/lib/hotspotd")?;
    let log = tempfile::NamedTempFile::new()?;
    let mut daemon = Running(
        lan.gateway
            .command("/usr/bin/hotspotd")
            .args(["--config", "/etc/hotspotd/config.toml"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()
            .context("start the installed hotspotd")?,
    );
    let serving = wait_for(Duration::from_secs(20), || {
        UnixStream::connect("/run/hotspotd/hotspotd.sock").is_ok()
    });
    let log_text = || fs::read_to_string(log.path()).unwrap_or_default();
    ensure!(
        serving,
        "the installed hotspotd serves /run/hotspotd/hotspotd.sock; log:\n{}",
        log_text()
    );
    run_ok("/usr/bin/hotspotctl", &["clients"])
        .with_context(|| format!("hotspotctl on the default socket; log:\n{}", log_text()))?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.0.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let status = daemon.0.wait()?;
    ensure!(
        status.success(),
        "the installed hotspotd stops cleanly ({status}); log:\n{}",
        log_text()
    );
    ensure!(
        attached(lan)?.len() == 2,
        "a stop leaves both programs attached: {:?}",
        attached(lan)?
    );
    for path in ["/var/lib/hotspotd/sessions.db", "/sys/fs/bpf/hotspotd"] {
        ensure!(Path::new(path).exists(), "the stopped daemon left {path}");
    }
    Ok(())
}

#[test]
fn the_deb_installs_runs_and_purges_without_a_trace() -> Result<()> {
    let lock = File::create("/run/lock/hotspotd-package-test.lock")?;
    let _turn = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .context("wait for another run of this test")?;
    claim_the_machine()?;

    let out = tempfile::tempdir()?;
    let deb = build_deb(out.path())?;
    let deb = deb.to_str().context("temporary path is UTF-8")?;
    // SQLite is bundled: the only shared library is libc.
    let depends = run_ok("dpkg-deb", &["--field", deb, "Depends"])?;
    ensure!(
        depends.starts_with("libc6 ") && !depends.contains("sqlite"),
        "Depends: {depends}"
    );

    let installed = Installed;
    run_ok("dpkg", &["--install", deb])?;
    check_installed()?;
    let lan = Lan::new(1)?;
    run_and_stop_the_installed_daemon(&lan)?;

    let purge = run("dpkg", &["--purge", PACKAGE])?;
    let said = String::from_utf8_lossy(&purge.stderr);
    ensure!(
        purge.status.success(),
        "dpkg --purge failed ({}): {said}",
        purge.status
    );
    ensure!(
        said.contains("hotspotd: released"),
        "prerm ran 'hotspotd --release', which found the pins: {said}"
    );
    drop(installed);
    ensure!(
        installed_version()?.is_none(),
        "hotspotd is still installed"
    );
    for path in FILES.iter().map(|(path, _, _)| *path).chain(RUNTIME_PATHS) {
        ensure!(
            fs::symlink_metadata(path).is_err(),
            "{path} is left after dpkg --purge"
        );
    }
    // Unpinned links are released by the kernel shortly after, not at once.
    let detached = wait_for(Duration::from_secs(5), || {
        attached(&lan).is_ok_and(|names| names.is_empty())
    });
    ensure!(
        detached,
        "the purge detached the stopped daemon's programs: {:?}",
        attached(&lan)?
    );
    Ok(())
}
