//! A `hotspotd` process for end-to-end tests: started inside a [`Lan`]'s gateway namespace
//! with its own API socket, `SQLite` file and bpffs pin folder, driven with `hotspotctl`.
//! It can be stopped (SIGTERM), crashed (SIGKILL), frozen (SIGSTOP) and started again on the
//! same state; its kernel state can be released (`hotspotd --release`) or wiped to simulate a
//! reboot. On drop it is killed and its pin folder under /sys/fs/bpf is removed.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aya::maps::{Map, MapData, MapError, PerCpuArray, PerCpuHashMap};
use hotspotd_common::{
    ClientSlots, MAP_CLIENTS, MAP_LAYOUT_VERSION, MAP_SEEN, MAP_USAGE, MacKey, Usage,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::lan::{LAN_IFACE, Lan};
use crate::netns::{owner_pid, pid_alive, unique_id};
use crate::{slowdown, wait_for};

/// How long the daemon may take to load its programs and open the API socket, natively.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// [`START_TIMEOUT`] stretched by [`slowdown`]: a debug build starts in about 15 s on
/// emulated arm64 (the kernel matrix's Cortex-A72), where 20 s leaves no margin on a busy host.
fn start_timeout() -> Duration {
    START_TIMEOUT * slowdown()
}
/// How long a SIGTERM'd daemon may take for its final save.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Global speed caps far above what the veths carry (100 Gbit/s), so that a test not about
/// speed meets no shaping: HTB queues drop what exceeds a cap, and the gate has billed those
/// bytes already (data is counted where it is admitted, as `docs/sessions.md` says). Tests of
/// speed limits pass their own `HOTSPOTD__SPEED__*` (later variables win) or a config file.
pub const UNSHAPED: [(&str, &str); 2] = [
    ("HOTSPOTD__SPEED__GLOBAL_DOWN_MBITS", "100000"),
    ("HOTSPOTD__SPEED__GLOBAL_UP_MBITS", "100000"),
];
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
    /// Every `HOTSPOTD__*` variable it was started with, so [`Daemon::restart`] starts the
    /// same daemon: same database, socket and pin folder.
    env: Vec<(OsString, OsString)>,
    /// The command it is started through (see [`Daemon::start_wrapped`]); empty for none.
    wrapper: Vec<OsString>,
    /// The configuration file it runs with.
    config: PathBuf,
    // Holds the socket, the database and the log; deleted on drop, after the child is gone.
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `hotspotd --config <workspace>/config.toml` in `lan.gateway`, with the LAN
    /// interface, API socket, pin folder, `SQLite` path, a 100 ms poll interval and the
    /// [`UNSHAPED`] global caps set through `HOTSPOTD__*` variables, plus `extra_env`. Returns
    /// once the API socket accepts connections; on early exit or timeout the error carries the
    /// daemon's log.
    pub fn start(lan: &Lan, extra_env: &[(&str, &str)]) -> Result<Daemon> {
        Self::start_wrapped(lan, extra_env, &[])
    }

    /// Like [`Daemon::start`], with the configuration file `config` instead of the
    /// repository's; a test may rewrite it and send SIGHUP ([`Daemon::reload`]).
    pub fn start_with_config(
        lan: &Lan,
        config: &Path,
        extra_env: &[(&str, &str)],
    ) -> Result<Daemon> {
        Self::start_full(lan, extra_env, &[], config)
    }

    /// Sends SIGHUP: the daemon reads its configuration file again.
    pub fn reload(&self) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).context("pid fits pid_t")?);
        kill(pid, Signal::SIGHUP).context("send SIGHUP to hotspotd")
    }

    /// Like [`Daemon::start`], but runs `WRAPPER... hotspotd --config ...`, also on
    /// [`Daemon::restart`]: e.g. `setpriv` with the capabilities the systemd unit grants. The
    /// wrapper must exec the daemon in its own process, so signals and the pid reach it.
    pub fn start_wrapped(
        lan: &Lan,
        extra_env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Result<Daemon> {
        let env: Vec<(&str, &str)> = UNSHAPED.iter().chain(extra_env).copied().collect();
        Self::start_full(lan, &env, wrapper, &workspace_root().join("config.toml"))
    }

    fn start_full(
        lan: &Lan,
        extra_env: &[(&str, &str)],
        wrapper: &[&str],
        config: &Path,
    ) -> Result<Daemon> {
        let mut daemon = Self::launch(lan, extra_env, wrapper, config)?;
        daemon.wait_until_serving()?;
        Ok(daemon)
    }

    /// Starts `hotspotd` as [`Daemon::start`] does, expecting it to refuse to start: waits for
    /// it to exit and returns its exit status and log. An error if it starts serving instead.
    pub fn start_expecting_exit(
        lan: &Lan,
        extra_env: &[(&str, &str)],
    ) -> Result<(ExitStatus, String)> {
        let mut daemon = Self::launch(lan, extra_env, &[], &workspace_root().join("config.toml"))?;
        let mut exited = None;
        let timeout = start_timeout();
        wait_for(timeout, || {
            exited = daemon.child.try_wait().ok().flatten();
            exited.is_some()
        });
        match exited {
            Some(status) => Ok((status, daemon.log())),
            // Drop kills it.
            None => bail!(
                "hotspotd did not exit within {timeout:?}; log:\n{}",
                daemon.log()
            ),
        }
    }

    /// Spawns the daemon with the harness's environment plus `extra_env`, without waiting.
    fn launch(
        lan: &Lan,
        extra_env: &[(&str, &str)],
        wrapper: &[&str],
        config: &Path,
    ) -> Result<Daemon> {
        remove_stale_pin_dirs();
        let (pid, seq) = unique_id();
        let dir = tempfile::Builder::new()
            .prefix("hotspotd-test-")
            .tempdir()
            .context("create a temporary folder for the daemon")?;
        // A test may put the socket elsewhere (to check its mode in a folder of its own).
        let socket = extra_env
            .iter()
            .find(|(key, _)| *key == "HOTSPOTD__API__SOCKET")
            .map_or_else(
                || dir.path().join("api.sock"),
                |(_, path)| PathBuf::from(path),
            );
        let log_path = dir.path().join("hotspotd.log");
        let pin_dir = Path::new(PIN_ROOT).join(format!("{PIN_PREFIX}{pid}-{seq}"));
        let mut env: Vec<(OsString, OsString)> = vec![
            ("HOTSPOTD__NETWORK__LAN_INTERFACE".into(), LAN_IFACE.into()),
            ("HOTSPOTD__API__SOCKET".into(), socket.clone().into()),
            ("HOTSPOTD__KERNEL__PIN_DIR".into(), pin_dir.clone().into()),
            (
                "HOTSPOTD__STORE__SQLITE_PATH".into(),
                dir.path().join("hotspotd.sqlite").into(),
            ),
            (
                "HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS".into(),
                "100".into(),
            ),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(key, value)| (OsString::from(key), OsString::from(value))),
        );
        let log =
            File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let wrapper: Vec<OsString> = wrapper.iter().map(OsString::from).collect();
        let child = spawn(lan, &wrapper, &env, config, log)?;
        Ok(Daemon {
            child,
            socket,
            pin_dir,
            log_path,
            env,
            wrapper,
            config: config.to_owned(),
            _dir: dir,
        })
    }

    /// Starts the daemon again after [`Daemon::kill`] (or a crash), on the same state: the
    /// same configuration, `SQLite` file, API socket and pin folder, so it restores what the
    /// first run saved and, if they are still there, takes over the pinned maps and links.
    /// Its log is appended to the first run's.
    pub fn restart(&mut self, lan: &Lan) -> Result<()> {
        if matches!(self.child.try_wait(), Ok(None)) {
            bail!(
                "hotspotd (pid {}) still runs; kill it before restarting",
                self.child.id()
            );
        }
        let mut log = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open {}", self.log_path.display()))?;
        writeln!(log, "----- hotspotd restarted by the test -----")
            .with_context(|| format!("write {}", self.log_path.display()))?;
        self.child = spawn(lan, &self.wrapper, &self.env, &self.config, log)?;
        self.wait_until_serving()
    }

    /// Waits until the API socket accepts connections; on early exit or timeout, stops the
    /// daemon and fails with its log.
    fn wait_until_serving(&mut self) -> Result<()> {
        let mut exited = None;
        let timeout = start_timeout();
        let ready = wait_for(timeout, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                exited = Some(status);
                return true;
            }
            // A socket file left by a killed run refuses connections until the new run
            // replaces it, so this also waits for that.
            UnixStream::connect(&self.socket).is_ok()
        });
        if let Some(status) = exited {
            bail!(
                "hotspotd exited during start-up ({status}); log:\n{}",
                self.log()
            );
        }
        if !ready {
            // Stopped here so the log is complete when read.
            let _ = self.child.kill();
            let _ = self.child.wait();
            bail!(
                "hotspotd did not open {} within {timeout:?}; log:\n{}",
                self.socket.display(),
                self.log()
            );
        }
        Ok(())
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

    /// Client `mac`'s counters as the kernel holds them at this moment, summed over CPUs and
    /// read from the daemon's pinned maps, so without waiting for the daemon's poll: `USAGE`
    /// while the daemon keeps room for the client there (it has a grant, or had one until the
    /// last poll), else `SEEN`. `None` when the kernel has not seen the client.
    pub fn kernel_usage(&self, mac: [u8; 6]) -> Result<Option<Usage>> {
        match self.kernel_counters(MAP_USAGE, mac)? {
            Some(usage) => Ok(Some(usage)),
            None => self.kernel_counters(MAP_SEEN, mac),
        }
    }

    /// Zeroes client `mac`'s counters in the daemon's pinned `USAGE` map behind its back:
    /// counters lost, as a table full of other MACs once made them.
    pub fn lose_counters(&self, mac: [u8; 6]) -> Result<()> {
        let slot = self
            .client_slots(mac)?
            .context("the daemon keeps no room for the client")?;
        let path = self.pin_path(MAP_USAGE);
        let data = MapData::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
        let mut map: PerCpuArray<MapData, Usage> =
            PerCpuArray::try_from(Map::from_map_data(data)?)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| error)?;
        let zero = aya::maps::PerCpuValues::try_from(vec![Usage::default(); cpus])?;
        map.set(slot.counters, zero, 0)
            .with_context(|| format!("zero a slot of {}", path.display()))
    }

    /// The slots the daemon gave client `mac` in its pinned `CLIENTS`; `None` if it keeps no
    /// room for it.
    pub fn client_slots(&self, mac: [u8; 6]) -> Result<Option<ClientSlots>> {
        let path = self.pin_path(MAP_CLIENTS);
        let data = MapData::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
        let map: aya::maps::HashMap<MapData, MacKey, ClientSlots> =
            aya::maps::HashMap::try_from(Map::from_map_data(data)?)?;
        match map.get(&MacKey::new(mac), 0) {
            Ok(slots) => Ok(Some(slots)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
        }
    }

    /// The path of pinned map `name` of this version's layout.
    fn pin_path(&self, name: &str) -> std::path::PathBuf {
        self.pin_dir
            .join(format!("v{MAP_LAYOUT_VERSION}"))
            .join(name)
    }

    /// Client `mac`'s counters in the pinned map `name`: `USAGE` (the slot `CLIENTS` names
    /// for it, while the daemon keeps room for it) or `SEEN`.
    pub fn kernel_counters(&self, name: &str, mac: [u8; 6]) -> Result<Option<Usage>> {
        if name == MAP_USAGE {
            let Some(slots) = self.client_slots(mac)? else {
                return Ok(None);
            };
            let path = self.pin_path(MAP_USAGE);
            let data =
                MapData::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
            let map: PerCpuArray<MapData, Usage> =
                PerCpuArray::try_from(Map::from_map_data(data)?)?;
            let per_cpu = map
                .get(&slots.counters, 0)
                .with_context(|| format!("read {}", path.display()))?;
            return Ok(Some(per_cpu.iter().fold(Usage::default(), Usage::merged)));
        }
        let path = self.pin_path(name);
        let data = MapData::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
        let map: PerCpuHashMap<MapData, MacKey, Usage> =
            PerCpuHashMap::try_from(Map::from_map_data(data)?)?;
        match map.get(&MacKey::new(mac), 0) {
            Ok(per_cpu) => Ok(Some(per_cpu.iter().fold(Usage::default(), Usage::merged))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Runs `hotspotctl --socket SOCKET ARGS...` and returns its exit status and output as
    /// they are, failure or not: for tests of what it says when it refuses.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        Command::new(hotspotctl_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .with_context(|| format!("run {} (set HOTSPOTCTL_BIN)", hotspotctl_bin().display()))
    }

    /// The value of one series in the daemon's `/metrics`, if it has it.
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        let answer = crate::http::exchange(
            self.socket(),
            &crate::http::request("GET", "/metrics", &[], b""),
        )?;
        anyhow::ensure!(answer.status == 200, "GET /metrics: {}", answer.status);
        let samples = hotspotd::metrics::parse(&answer.body).map_err(anyhow::Error::msg)?;
        Ok(samples
            .into_iter()
            .find(|(name, _)| name == series)
            .map(|(_, value)| value))
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

    /// `hotspotctl session add --mac MAC ARGS...`: the created session, as JSON.
    pub fn add_session(&self, mac: &str, args: &[&str]) -> Result<serde_json::Value> {
        let mut full = vec!["session", "add", "--mac", mac];
        full.extend_from_slice(args);
        self.ctl_json(&full)
    }

    /// Sells `mac` an hour at the global speed and connects it, so its traffic passes the
    /// gate: for tests about what is counted, not about sessions. Errors unless it runs.
    pub fn connect_for_an_hour(&self, mac: &str) -> Result<serde_json::Value> {
        let session = self.add_session(
            mac,
            &[
                "--type",
                "time",
                "--time-secs",
                "3600",
                "--global-speed",
                "--connect",
            ],
        )?;
        if session["state"] != "running" {
            bail!("the session of {mac} does not run: {session}");
        }
        Ok(session)
    }

    /// Starts `hotspotctl events --json` and returns once it is connected (the stream carries
    /// events from when it is opened): the client `probe_mac` is sold an hour, then paused and
    /// connected until one of its events comes through. Then the lines that follow, and the
    /// follower, to be killed.
    pub fn follow_events(&self, probe_mac: &str) -> Result<(Child, mpsc::Receiver<String>)> {
        let mut follower = Command::new(hotspotctl_bin())
            .arg("--socket")
            .arg(self.socket())
            .args(["events", "--json"])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = follower.stdout.take().context("the follower's stdout")?;
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        self.connect_for_an_hour(probe_mac)?;
        let connected = wait_for(Duration::from_secs(10), || {
            let _ = self.ctl_json(&["pause", "--mac", probe_mac]);
            let _ = self.ctl_json(&["connect", "--mac", probe_mac]);
            std::iter::from_fn(|| lines_rx.try_recv().ok()).any(|line| line.contains(probe_mac))
        });
        if !connected {
            bail!("the event stream never showed the probe client's events");
        }
        Ok((follower, lines_rx))
    }

    /// `hotspotctl sessions`: every session, as JSON objects.
    pub fn sessions(&self) -> Result<Vec<serde_json::Value>> {
        let list = self.ctl_json(&["sessions"])?;
        list.as_array()
            .cloned()
            .with_context(|| format!("hotspotctl sessions printed no JSON array: {list}"))
    }

    /// Session `id` as `hotspotctl sessions` shows it; an error if it is not listed.
    pub fn session(&self, id: i64) -> Result<serde_json::Value> {
        self.sessions()?
            .into_iter()
            .find(|session| session["id"] == id)
            .with_context(|| format!("hotspotctl sessions does not list session {id}"))
    }

    /// Client `mac` as `hotspotctl clients` shows it; an error if it is not listed.
    pub fn client(&self, mac: &str) -> Result<serde_json::Value> {
        let table = self.ctl_json(&["clients"])?;
        table
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| row["mac"] == mac)
            .cloned()
            .with_context(|| format!("hotspotctl clients does not list {mac}: {table}"))
    }

    /// `hotspotctl status`, as JSON.
    pub fn status(&self) -> Result<serde_json::Value> {
        self.ctl_json(&["status"])
    }

    /// Sends SIGTERM and waits up to 10 s for the daemon to exit; returns its exit status.
    /// If it does not exit, dropping it kills it.
    pub fn stop(mut self) -> Result<ExitStatus> {
        self.terminate()
    }

    /// Like [`Daemon::stop`], but keeps the handle and what the daemon left (the database,
    /// and its programs, pins and trees in the kernel, which a stop leaves as a crash does), so
    /// [`Daemon::restart`] starts it again on them and [`Daemon::release`] can free them.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        let mut status = None;
        wait_for(STOP_TIMEOUT, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.with_context(|| {
            format!(
                "hotspotd did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log()
            )
        })
    }

    /// Kills the daemon with SIGKILL, as a crash would, and waits for it to be gone. Its
    /// state stays: the database, the socket file, and the pinned maps and links (so the gate
    /// keeps enforcing in the kernel). [`Daemon::restart`] starts it again.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        self.child.wait().context("wait for the killed hotspotd")?;
        Ok(())
    }

    /// Stops the daemon with SIGSTOP: it takes no more polls, timers or commands, while the
    /// kernel goes on enforcing. [`Daemon::thaw`] resumes it.
    pub fn freeze(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Resumes a daemon stopped by [`Daemon::freeze`] (SIGCONT).
    pub fn thaw(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Runs `hotspotd --release` in the gateway with the daemon's configuration (same pin
    /// folder, socket and interfaces) and returns its exit status and output as they are: it
    /// detaches the programs and removes the pins, the speed-limit trees and the IFB that a
    /// stopped or crashed daemon left. Refused while the daemon runs.
    pub fn release(&self, lan: &Lan) -> Result<Output> {
        let bin = hotspotd_bin();
        lan.gateway
            .command(&bin)
            .arg("--release")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {} --release (set HOTSPOTD_BIN)", bin.display()))
    }

    /// Removes what a killed daemon left in the kernel, as a reboot would: unpins its TCX
    /// links (with no process holding them, that detaches the programs) and its maps, and
    /// deletes the pin folder. The database and the socket file stay. Detaching happens in
    /// the kernel shortly after the pins go; check with `hotspotd::bpf::attached_programs`.
    pub fn remove_kernel_state(&mut self) -> Result<()> {
        if matches!(self.child.try_wait(), Ok(None)) {
            bail!(
                "hotspotd (pid {}) still runs and holds its links; kill it first",
                self.child.id()
            );
        }
        match fs::remove_dir_all(&self.pin_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("remove {}", self.pin_dir.display())),
        }
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        let pid = Pid::from_raw(
            i32::try_from(self.child.id()).context("daemon pid does not fit in pid_t")?,
        );
        kill(pid, signal).with_context(|| format!("send {signal} to hotspotd"))
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
        // Pins keep maps alive in the kernel, and a stop leaves them (and the programs
        // attached through them): a test's pins must not outlive it. Removing them releases
        // what `hotspotd --release` would in the kernel; the trees and the IFB go with the
        // test's namespaces. Every test has a pin folder of its own, so none sees another's.
        let _ = fs::remove_dir_all(&self.pin_dir);
    }
}

/// Starts `hotspotd` in `lan.gateway` (through `wrapper`, if not empty) with `env`, its
/// stdout and stderr going to `log`.
fn spawn(
    lan: &Lan,
    wrapper: &[OsString],
    env: &[(OsString, OsString)],
    config: &Path,
    log: File,
) -> Result<Child> {
    let log_for_stdout = log.try_clone().context("duplicate the log file handle")?;
    let bin = hotspotd_bin();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = lan.gateway.command(program);
            command.args(args).arg(&bin);
            command
        }
        None => lan.gateway.command(&bin),
    };
    command
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(key, value)| (key, value)))
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
    command
        .spawn()
        .with_context(|| format!("start {} (built? set HOTSPOTD_BIN)", bin.display()))
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
