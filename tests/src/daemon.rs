//! A `hotspotd` process for end-to-end tests: started inside a [`Lan`]'s gateway namespace
//! with its own API socket, `SQLite` file and bpffs pin folder, driven with `hotspotctl`.
//! On drop it is killed and its pin folder under /sys/fs/bpf is removed.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::lan::{LAN_IFACE, Lan};
use crate::netns::{owner_pid, pid_alive, unique_id};
use crate::wait_for;

/// How long the daemon may take to load its programs and open the API socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERM'd daemon may take for its final save.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pin folders are `/sys/fs/bpf/{PIN_PREFIX}{pid}-{seq}`, so a crashed run's leftovers can be
/// recognised and removed.
const PIN_ROOT: &str = "/sys/fs/bpf";
const PIN_PREFIX: &str = "hotspotd-test-";

/// The workspace folder (the parent of this crate).
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// `$HOTSPOTD_BIN`, else `<workspace>/target/debug/hotspotd`.
#[must_use]
pub fn hotspotd_bin() -> PathBuf {
    binary("HOTSPOTD_BIN", "hotspotd")
}

/// `$HOTSPOTCTL_BIN`, else `<workspace>/target/debug/hotspotctl`.
#[must_use]
pub fn hotspotctl_bin() -> PathBuf {
    binary("HOTSPOTCTL_BIN", "hotspotctl")
}

fn binary(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(
        || workspace_root().join("target").join("debug").join(name),
        PathBuf::from,
    )
}

/// A running `hotspotd`; killed on drop if [`Daemon::stop`] was not called.
///
/// Declare it after the [`Lan`] it runs in, so it is dropped (killed) first.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    pin_dir: PathBuf,
    log_path: PathBuf,
    // Holds the socket, the database and the log; deleted on drop, after the child is gone.
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `hotspotd --config <workspace>/config.toml` in `lan.gateway`, with the LAN
    /// interface, API socket, pin folder, `SQLite` path and a 100 ms poll interval overridden
    /// through `HOTSPOTD__*` variables, plus `extra_env`. Returns once the API socket accepts
    /// connections; on early exit or timeout the error carries the daemon's log.
    pub fn start(lan: &Lan, extra_env: &[(&str, &str)]) -> Result<Daemon> {
        remove_stale_pin_dirs();
        let (pid, seq) = unique_id();
        let dir = tempfile::Builder::new()
            .prefix("hotspotd-test-")
            .tempdir()
            .context("create a temporary folder for the daemon")?;
        let socket = dir.path().join("api.sock");
        let log_path = dir.path().join("hotspotd.log");
        let pin_dir = Path::new(PIN_ROOT).join(format!("{PIN_PREFIX}{pid}-{seq}"));
        let log =
            File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let log_for_stdout = log.try_clone().context("duplicate the log file handle")?;
        let bin = hotspotd_bin();
        let config = workspace_root().join("config.toml");

        let mut command = lan.gateway.command(&bin);
        command
            .arg("--config")
            .arg(&config)
            .env("HOTSPOTD__NETWORK__LAN_INTERFACE", LAN_IFACE)
            .env("HOTSPOTD__API__SOCKET", &socket)
            .env("HOTSPOTD__KERNEL__PIN_DIR", &pin_dir)
            .env(
                "HOTSPOTD__STORE__SQLITE_PATH",
                dir.path().join("hotspotd.sqlite"),
            )
            .env("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "100")
            .envs(
                extra_env
                    .iter()
                    .map(|(k, v)| (OsStr::new(k), OsStr::new(v))),
            )
            .stdin(Stdio::null())
            .stdout(log_for_stdout)
            .stderr(log);
        // SAFETY: prctl(2) is async-signal-safe. The daemon dies with the thread that started
        // it, so a test process killed before its drops run leaves no daemon behind.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {} (built? set HOTSPOTD_BIN)", bin.display()))?;
        let mut daemon = Daemon {
            child,
            socket,
            pin_dir,
            log_path,
            _dir: dir,
        };

        let mut exited = None;
        let ready = wait_for(START_TIMEOUT, || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                exited = Some(status);
                return true;
            }
            UnixStream::connect(&daemon.socket).is_ok()
        });
        if let Some(status) = exited {
            bail!(
                "hotspotd exited during start-up ({status}); log:\n{}",
                daemon.log()
            );
        }
        if !ready {
            // Stopped here so the log is complete when read.
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            bail!(
                "hotspotd did not open {} within {START_TIMEOUT:?}; log:\n{}",
                daemon.socket.display(),
                daemon.log()
            );
        }
        Ok(daemon)
    }

    /// The API socket (reachable from any namespace: it is a filesystem path).
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bpffs folder the daemon pins its maps in.
    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Runs `hotspotctl --socket SOCKET ARGS... --json` and parses its stdout as JSON.
    pub fn ctl_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let output = Command::new(hotspotctl_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .arg("--json")
            .output()
            .with_context(|| format!("run {} (set HOTSPOTCTL_BIN)", hotspotctl_bin().display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "hotspotctl {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                if stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {stdout}")
                }
            );
        }
        serde_json::from_str(&stdout)
            .with_context(|| format!("hotspotctl {} printed no JSON: {stdout}", args.join(" ")))
    }

    /// Sends SIGTERM and waits up to 10 s for the daemon to exit; returns its exit status.
    pub fn stop(mut self) -> Result<ExitStatus> {
        let pid = Pid::from_raw(
            i32::try_from(self.child.id()).context("daemon pid does not fit in pid_t")?,
        );
        kill(pid, Signal::SIGTERM).context("send SIGTERM to hotspotd")?;
        let mut status = None;
        wait_for(STOP_TIMEOUT, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(status) => Ok(status),
            // Drop kills it.
            None => bail!(
                "hotspotd did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log()
            ),
        }
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read(&self.log_path).map_or_else(
            |e| format!("(cannot read {}: {e})", self.log_path.display()),
            |bytes| String::from_utf8_lossy(&bytes).into_owned(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Pins keep maps alive in the kernel; a test's pins must not outlive it.
        let _ = fs::remove_dir_all(&self.pin_dir);
    }
}

/// Removes pin folders of test processes that no longer run (killed before their drops).
fn remove_stale_pin_dirs() {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PIN_PREFIX)) else {
            continue;
        };
        // Same shape as namespace names (`hs-{pid}-{seq}-x`), so reuse that parser.
        if owner_pid(&format!("hs-{rest}-pin")).is_some_and(|pid| !pid_alive(pid)) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
