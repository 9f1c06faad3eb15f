//! Filesystems a test can break under a running daemon: a small tmpfs to fill up, and an ext4
//! image on a loop device that turns read-only on an error, as a failing SD card's does. Each
//! is mounted on its own temporary folder and taken down on drop (also while unwinding), with
//! its loop device and image. Needs root; runs `mount`, `umount`, `losetup`, `mkfs.ext4` and
//! `e2fsck`.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};

use crate::wait_for;

/// How long unmounting may wait for the daemon to let go of a broken filesystem: it closes
/// the database after each failed write and opens it again for the next attempt, seconds
/// apart.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `program args...` and fails with its output unless it exits 0.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    ensure!(
        output.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Unmounts `dir`, waiting while it is busy (a process still has a file open there).
fn unmount(dir: &Path) -> Result<()> {
    let dir = path_str(dir)?;
    let mut last = String::new();
    let done = wait_for(UNMOUNT_TIMEOUT, || match run("umount", &[dir]) {
        Ok(_) => true,
        Err(error) => {
            last = error.to_string();
            false
        }
    });
    ensure!(done, "{dir} stayed busy for {UNMOUNT_TIMEOUT:?}: {last}");
    Ok(())
}

/// A tmpfs of a fixed size on a folder of its own, unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_bytes` (mode 0700).
    pub fn mount(size_bytes: u64) -> Result<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("hotspotd-tmpfs-")
            .tempdir()
            .context("create a folder to mount a tmpfs on")?;
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_bytes},mode=0700"),
                "hotspotd-test",
                path_str(dir.path())?,
            ],
        )?;
        Ok(Tmpfs { dir })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem is full; removing the file frees the space again.
    pub fn fill(&self) -> Result<PathBuf> {
        let path = self.path().join("filler");
        let mut file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        let block = vec![0xa5_u8; 64 * 1024];
        // A write that does not fit writes what does; the next one fails.
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(error) => return Err(error).context("fill the tmpfs"),
            }
        }
        Ok(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon killed a moment ago may not have closed its files yet.
        let _ = run("umount", &["-l", &self.dir.path().to_string_lossy()]);
    }
}

/// An ext4 filesystem in an image file on a loop device, mounted with `errors=remount-ro`.
#[derive(Debug)]
pub struct Ext4Disk {
    /// Holds the image and the mount point; removed on drop, after the unmount.
    _dir: tempfile::TempDir,
    mount_point: PathBuf,
    /// `/dev/loopN`.
    device: String,
}

impl Ext4Disk {
    /// Makes a `size_bytes` image, attaches it to a free loop device, formats and mounts it.
    pub fn new(size_bytes: u64) -> Result<Ext4Disk> {
        let dir = tempfile::Builder::new()
            .prefix("hotspotd-ext4-")
            .tempdir()
            .context("create a folder for an ext4 image")?;
        let image = dir.path().join("disk.img");
        File::create(&image)
            .and_then(|file| file.set_len(size_bytes))
            .with_context(|| format!("create {}", image.display()))?;
        let mount_point = dir.path().join("mnt");
        fs::create_dir(&mount_point)
            .with_context(|| format!("create {}", mount_point.display()))?;
        run("mkfs.ext4", &["-q", "-F", path_str(&image)?])?;
        let device = run("losetup", &["--find", "--show", path_str(&image)?])?;
        let disk = Ext4Disk {
            _dir: dir,
            mount_point,
            device,
        };
        disk.mount()?;
        Ok(disk)
    }

    fn mount(&self) -> Result<()> {
        run(
            "mount",
            &[
                "-t",
                "ext4",
                "-o",
                "errors=remount-ro",
                &self.device,
                path_str(&self.mount_point)?,
            ],
        )
        .map(drop)
    }

    /// The mounted filesystem.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Reports an error to ext4, as it does itself on a bad block: with `errors=remount-ro` the
    /// kernel turns the filesystem read-only at once, open files or not, and every write
    /// fails from then on. (`mount -o remount,ro` is refused while a file is open for writing,
    /// which the daemon's database always is, so this is how a filesystem goes read-only under
    /// a running daemon.)
    pub fn fail(&self) -> Result<()> {
        let name = Path::new(&self.device)
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("{} has no device name", self.device))?;
        let trigger = Path::new("/sys/fs/ext4")
            .join(name)
            .join("trigger_fs_error");
        fs::write(&trigger, "hotspotd storage test")
            .with_context(|| format!("write {}", trigger.display()))?;
        let options = run(
            "findmnt",
            &["-n", "-o", "OPTIONS", path_str(&self.mount_point)?],
        )?;
        ensure!(
            options
                .split(',')
                .any(|option| option == "ro" || option == "emergency_ro"),
            "{} did not turn read-only: {options}",
            self.mount_point.display()
        );
        Ok(())
    }

    /// What an operator does once the disk is fine again: ext4 refuses to become writable
    /// after an error, so unmount (once the daemon has let go of the file), check and repair,
    /// and mount again at the same place.
    pub fn repair(&self) -> Result<()> {
        unmount(&self.mount_point)?;
        // 0: clean; 1: errors corrected. Anything else is a failed repair.
        let status = Command::new("e2fsck")
            .args(["-f", "-y", &self.device])
            .output()
            .context("run e2fsck")?;
        match status.status.code() {
            Some(0 | 1) => {}
            _ => bail!(
                "e2fsck {} failed ({}): {}",
                self.device,
                status.status,
                String::from_utf8_lossy(&status.stdout).trim()
            ),
        }
        self.mount()
    }
}

impl Drop for Ext4Disk {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.mount_point.to_string_lossy()]);
        // A device still in use is detached as soon as its last user is gone.
        let _ = run("losetup", &["-d", &self.device]);
    }
}
