//! A real `FreeRADIUS` for the RADIUS tests and benchmark: Debian's `freeradius` run with
//! exactly the files of docs/radius/ in a temporary folder, in a network namespace of its own,
//! its SQL module on SQLite; each LAN's gateway reaches it over a veth of its own. Also the
//! shipped config.toml pointed at it, and `radclient` from its namespace. Needs root and
//! `freeradius`, `freeradius-utils` (scripts/bootstrap.sh installs them).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{Lan, Netns, workspace_root};

/// The secret of docs/radius/clients.conf, as written there.
pub const SECRET: &str = "change-this-long-random-secret";
/// How long `FreeRADIUS` may take to start.
const RADIUS_START: Duration = Duration::from_secs(20);

/// A `FreeRADIUS` run with the files of docs/radius/ in a temporary folder, in a namespace of
/// its own; each LAN's gateway reaches it over a veth of its own ([`FreeRadius::link`]).
pub struct FreeRadius {
    pub netns: Netns,
    child: Option<Child>,
    dir: tempfile::TempDir,
    links: u8,
}

impl FreeRadius {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        copy_dir(&workspace_root().join("docs/radius"), dir.path())?;
        let db = rusqlite::Connection::open(dir.path().join("hotspotd-radius.sqlite"))?;
        db.execute_batch(&std::fs::read_to_string(dir.path().join("schema.sql"))?)?;
        // schema.sql puts the file in WAL mode, so the tests' reads of radacct never make the
        // server's writes wait (it runs as root here, so it can make the -wal file).
        let mode: String = db.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        ensure!(
            mode == "wal",
            "schema.sql left the database in {mode} mode, not WAL"
        );
        let name = format!("hs-{}-{}-radius", std::process::id(), unique());
        let netns = Netns::create(&name)?;
        netns.ip(&["link", "set", "lo", "up"])?;
        let mut radius = Self {
            netns,
            child: None,
            dir,
            links: 0,
        };
        radius.run()?;
        Ok(radius)
    }

    /// Starts `freeradius -f -d <dir>` and waits until it serves.
    pub fn run(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.log_path())?;
        let child = self
            .netns
            .command("freeradius")
            .args(["-f", "-d"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start freeradius (scripts/bootstrap.sh installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + RADIUS_START;
        while Instant::now() < deadline {
            if self.log().contains("Ready to process requests") {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("freeradius exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "freeradius did not start in {RADIUS_START:?}:\n{}",
            self.log()
        )
    }

    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("freeradius.out")
    }

    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A veth between this server's namespace and `lan`'s gateway: the server is
    /// `10.99.<n>.1`, the gateway `10.99.<n>.2` (inside clients.conf's 10.0.0.0/8).
    pub fn link(&mut self, lan: &Lan) -> Result<Ipv4Addr> {
        self.links += 1;
        let n = self.links;
        let (ours, theirs) = (format!("rad{n}"), format!("radius{n}"));
        self.netns.ip(&[
            "link",
            "add",
            &ours,
            "type",
            "veth",
            "peer",
            "name",
            &theirs,
            "netns",
            lan.gateway.name(),
        ])?;
        self.netns
            .ip(&["addr", "add", &format!("10.99.{n}.1/24"), "dev", &ours])?;
        self.netns.ip(&["link", "set", &ours, "up"])?;
        lan.gateway
            .ip(&["addr", "add", &format!("10.99.{n}.2/24"), "dev", &theirs])?;
        lan.gateway.ip(&["link", "set", &theirs, "up"])?;
        Ok(Ipv4Addr::new(10, 99, n, 1))
    }

    pub fn db(&self) -> Result<rusqlite::Connection> {
        Ok(rusqlite::Connection::open(
            self.dir.path().join("hotspotd-radius.sqlite"),
        )?)
    }

    /// A code the server knows: its password is itself; `check` are more radcheck items,
    /// `reply` radreply items.
    pub fn add_code(
        &self,
        code: &str,
        check: &[(&str, &str)],
        reply: &[(&str, &str)],
    ) -> Result<()> {
        let db = self.db()?;
        db.execute(
            "INSERT INTO radcheck (username, attribute, op, value) VALUES (?1, 'Cleartext-Password', ':=', ?1)",
            [code],
        )?;
        for (attribute, value) in check {
            db.execute(
                "INSERT INTO radcheck (username, attribute, op, value) VALUES (?1, ?2, ':=', ?3)",
                [code, attribute, value],
            )?;
        }
        for (attribute, value) in reply {
            db.execute(
                "INSERT INTO radreply (username, attribute, op, value) VALUES (?1, ?2, '=', ?3)",
                [code, attribute, value],
            )?;
        }
        Ok(())
    }
    /// The folder the server runs from: a copy of docs/radius/ and its database.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `count` codes `{prefix}{n:06}` (n from 0), each its own password, with the same `check`
    /// and `reply` items, in one transaction; their names.
    pub fn add_codes(
        &self,
        prefix: &str,
        count: usize,
        check: &[(&str, &str)],
        reply: &[(&str, &str)],
    ) -> Result<Vec<String>> {
        let mut db = self.db()?;
        let tx = db.transaction()?;
        let mut codes = Vec::with_capacity(count);
        for n in 0..count {
            let code = format!("{prefix}{n:06}");
            tx.execute(
                "INSERT INTO radcheck (username, attribute, op, value) VALUES (?1, 'Cleartext-Password', ':=', ?1)",
                [&code],
            )?;
            for (attribute, value) in check {
                tx.execute(
                    "INSERT INTO radcheck (username, attribute, op, value) VALUES (?1, ?2, ':=', ?3)",
                    [code.as_str(), attribute, value],
                )?;
            }
            for (attribute, value) in reply {
                tx.execute(
                    "INSERT INTO radreply (username, attribute, op, value) VALUES (?1, ?2, '=', ?3)",
                    [code.as_str(), attribute, value],
                )?;
            }
            codes.push(code);
        }
        tx.commit()?;
        Ok(codes)
    }

    /// Runs `radclient` in the server's namespace: `kind` (`coa`, `disconnect`) to `to` with
    /// `attributes` (one per line) and `secret`; its stdout and stderr.
    pub fn radclient(
        &self,
        to: &str,
        kind: &str,
        secret: &str,
        attributes: &str,
    ) -> Result<String> {
        use std::io::Write as _;
        let mut child = self
            .netns
            .command("radclient")
            .args(["-x", "-r", "1", "-t", "2", "-d"])
            .arg(self.dir.path())
            .args(["-D", "/usr/share/freeradius", to, kind, secret])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run radclient (freeradius-utils)")?;
        child
            .stdin
            .take()
            .context("radclient's stdin")?
            .write_all(attributes.as_bytes())?;
        let output = child.wait_with_output()?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The shipped config.toml with `[radius]` pointing at `servers` (the first as `auth_server`,
/// the rest as `auth_servers`), the docs' secret and `timeout_ms`.
pub fn config_with_radius(dir: &Path, servers: &[String], timeout_ms: u64) -> Result<PathBuf> {
    let shipped = std::fs::read_to_string(workspace_root().join("config.toml"))?;
    let rest: Vec<String> = servers[1..].iter().map(|s| format!("{s:?}")).collect();
    let config = shipped
        .replace(
            "auth_server = \"\"",
            &format!("auth_server = {:?}", servers[0]),
        )
        .replace(
            "auth_servers = []",
            &format!("auth_servers = [{}]", rest.join(", ")),
        )
        .replace("secret = \"\"", &format!("secret = {SECRET:?}"))
        .replace("timeout_ms = 2000", &format!("timeout_ms = {timeout_ms}"))
        .replace("retries = 2", "retries = 1");
    ensure!(
        config.contains(&format!("secret = {SECRET:?}")),
        "config.toml has no [radius] secret line"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}
