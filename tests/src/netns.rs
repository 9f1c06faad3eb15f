//! Named network namespaces owned by a test: created with `ip netns add`, entered per thread
//! with `setns(2)` or per child process in `pre_exec`, deleted on drop (also while unwinding
//! from a panic). Also removes namespaces left behind by test processes that crashed.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

/// Where `ip netns add` bind-mounts a namespace so it outlives its processes.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Every namespace this crate creates is named `hs-{pid}-{seq}-{role}`; stale cleanup only
/// ever touches names of this shape, never anything else on the machine.
const NAME_PREFIX: &str = "hs-";

/// `ip netns add` turns /run/netns into a shared bind mount on first use; two first uses at
/// the same moment can stack mounts, so this process creates namespaces one at a time.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// Sequence numbers for names that must be unique within this process (namespaces, pin
/// dirs); the pid makes them unique across processes.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A value unique to this process for its lifetime: `(pid, sequence number)`.
pub(crate) fn unique_id() -> (u32, u64) {
    (std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed))
}

/// A named network namespace, deleted (`ip netns del`) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a new, empty namespace named `name` (only `lo`, down).
    pub fn create(name: &str) -> Result<Netns> {
        {
            let _serialised = CREATE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
            run_ip(&["netns", "add", name])?;
        }
        Ok(Netns {
            name: name.to_owned(),
        })
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that keeps the namespace alive: `/run/netns/NAME`.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    fn open(&self) -> Result<File> {
        File::open(self.path()).with_context(|| format!("open network namespace {}", self.name))
    }

    /// Starts `f` on a new thread that has entered this namespace. Returns once the thread
    /// is inside (or failed to get there). Sockets created on that thread stay in this
    /// namespace wherever they are used later.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>> {
        let ns = self.open()?;
        let name = self.name.clone();
        let (entered_tx, entered_rx) = mpsc::sync_channel(1);
        let handle = thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || {
                // CLONE_NEWNET may be entered by one thread of a multi-threaded process; only
                // this thread moves, the test thread stays in the host namespace.
                let entered = setns(&ns, CloneFlags::CLONE_NEWNET);
                drop(ns);
                let failed = entered.is_err();
                // The receiver only goes away if spawn() itself is gone; nothing to tell then.
                let _ = entered_tx.send(entered);
                if failed {
                    // Never run `f` in the wrong namespace. The caller already has the error
                    // and never joins; resume_unwind ends the thread without the panic hook's
                    // noise.
                    std::panic::resume_unwind(Box::new("setns failed"));
                }
                f()
            })
            .with_context(|| format!("spawn a thread for network namespace {name}"))?;
        match entered_rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(errno)) => bail!("setns into network namespace {name}: {errno}"),
            Err(_) => bail!("thread for network namespace {name} died before entering it"),
        }
    }

    /// Runs `f` on a fresh thread inside this namespace and waits for its result. A panic in
    /// `f` becomes an error carrying the panic message.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.spawn(f)?.join().map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic)".to_owned());
            anyhow!(
                "closure in network namespace {} panicked: {message}",
                self.name
            )
        })
    }

    /// A command whose child process enters this namespace before `exec`.
    ///
    /// Deliberately not `ip netns exec`: that also unshares the mount namespace and remounts
    /// /sys, which hides /sys/fs/bpf (pinned maps) from the child. Here the child keeps the
    /// caller's mounts, so /sys/class/net shows the host's interfaces; use netlink or
    /// `if_nametoindex` in the child, not sysfs.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        // Opened now, in the parent: pre_exec runs after fork, where only async-signal-safe
        // calls are allowed (no allocation, so the error is kept as a bare errno).
        let ns = File::open(self.path()).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT));
        // SAFETY: the closure only calls setns(2) and builds an io::Error from an errno, both
        // async-signal-safe; the fd it uses is owned by the closure and outlives the fork.
        unsafe {
            command.pre_exec(move || match &ns {
                Ok(file) => setns(file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from),
                Err(errno) => Err(io::Error::from_raw_os_error(*errno)),
            });
        }
        command
    }

    /// Runs `ip -n NAME ARGS...` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ip(&full)
    }

    /// Runs several `ip` commands (one per line, without the leading `ip`) in one process:
    /// `ip -n NAME -batch -`. Stops at the first failing line.
    pub fn ip_batch(&self, lines: &[String]) -> Result<()> {
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn ip (is iproute2 installed?)")?;
        let script = lines.join("\n") + "\n";
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .with_context(|| format!("write batch to ip -n {}", self.name))?;
        }
        let output = child
            .wait_with_output()
            .with_context(|| format!("wait for ip -n {} -batch", self.name))?;
        if !output.status.success() {
            bail!(
                "ip -n {} -batch failed ({}): {}\nbatch:\n{script}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Writes sysctls in this namespace: `("net/ipv6/conf/all/forwarding", "1")`, paths
    /// relative to /proc/sys. /proc/sys/net shows the namespace of the task that opens it, so
    /// the writes happen on a thread inside the namespace.
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> Result<()> {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let name = self.name.clone();
        self.run(move || -> Result<()> {
            for (key, value) in settings {
                let path = Path::new("/proc/sys").join(&key);
                fs::write(&path, &value)
                    .with_context(|| format!("set {key}={value} in network namespace {name}"))?;
            }
            Ok(())
        })?
    }

    /// The names `ip netns list` shows.
    pub fn list() -> Result<Vec<String>> {
        let out = run_ip(&["netns", "list"])?;
        // Lines look like `NAME` or `NAME (id: 3)`.
        Ok(out
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(ToOwned::to_owned)
            .collect())
    }

    /// Deletes namespaces named `hs-{pid}-...` whose process no longer exists: leftovers of
    /// a test process that was killed before its drops ran. Returns how many were deleted.
    pub fn remove_stale() -> Result<usize> {
        let entries = match fs::read_dir(NETNS_RUN_DIR) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).context("list /run/netns"),
        };
        let mut removed = 0;
        for entry in entries {
            let name = entry.context("list /run/netns")?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(pid) = owner_pid(name) else { continue };
            if !pid_alive(pid) && run_ip(&["netns", "del", name]).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Veths with an end in here go with it. Errors are ignored: the namespace may be gone
        // already, and a panic in drop during unwinding would abort the test process.
        let _ = run_ip(&["netns", "del", &self.name]);
    }
}

/// The pid in a name made by this crate (`hs-{pid}-{seq}-{role}`), or None for other names.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.strip_prefix(NAME_PREFIX)?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next().filter(|role| !role.is_empty())?;
    Some(pid)
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Runs `ip ARGS...` and returns stdout; the error carries stderr.
fn run_ip(args: &[&str]) -> Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("run ip (is iproute2 installed?)")?;
    if !output.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn owner_pid_only_matches_our_names() {
        assert_eq!(owner_pid("hs-1234-7-gw"), Some(1234));
        assert_eq!(owner_pid("hs-1234-7-c12"), Some(1234));
        assert_eq!(owner_pid("hs-1234-7-inet"), Some(1234));
        assert_eq!(owner_pid("hs-1234-7"), None);
        assert_eq!(owner_pid("hs-x-7-gw"), None);
        assert_eq!(owner_pid("hs-1234-x-gw"), None);
        assert_eq!(owner_pid("ns-1234-7-gw"), None);
        assert_eq!(owner_pid("hs-1234-7-"), None);
    }
}
