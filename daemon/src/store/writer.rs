//! The store thread's hold on the file. Before each write it checks that the file at
//! `store.sqlite_path` is still the one open: SQLite goes on writing to a file deleted while
//! it is open, into an inode nobody will ever read again, so a deleted (or replaced) file is
//! let go and what is at the path now is opened — a new database when there is none — and
//! given everything the store holds. After a failed write it lets go of the file too: a broken
//! filesystem can then be unmounted and repaired, and the next attempt opens the file again.
//! Blocking. Side effects: opens, creates and writes the database file.

use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{StoreError, sqlite::Db};

/// Which file a path names: a deleted file's name is gone, and a new file at the same path
/// has another inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

/// The database file as the store thread holds it.
pub(super) struct Writer {
    path: PathBuf,
    /// `None` after a failure, until the next attempt opens the file again.
    open: Option<Open>,
}

/// An open database and the files it opened.
struct Open {
    db: Db,
    file: FileId,
    /// Its `-wal` and `-shm`, which SQLite creates as it opens the file (`Db::open` runs a
    /// transaction). When the file is deleted or replaced, SQLite cannot fold its WAL into it
    /// and leaves the WAL at the path on close; applied to whatever is at the path next, that
    /// WAL would overwrite it. Known by inode, they are removed; a WAL that came with a
    /// replacement file is another inode and stays.
    companions: Vec<(PathBuf, FileId)>,
}

impl Writer {
    /// Holds `db`, just opened at `path`.
    pub(super) fn new(path: &Path, db: Db) -> Self {
        let open = match file_id(path) {
            Ok(Some(file)) => Some(Open {
                db,
                file,
                companions: companions(path),
            }),
            // Gone already: the first write opens what is there then.
            _ => None,
        };
        Self {
            path: path.to_owned(),
            open,
        }
    }

    /// The database to write, opened again if needed. `full` is true when it was (re)opened:
    /// the file may then lack anything — a new one lacks everything, one that failed a write
    /// lacks that write, a backup put in its place lacks what came after — so the next write
    /// must carry everything the store holds.
    pub(super) fn prepare(&mut self) -> Result<Prepared<'_>, StoreError> {
        let (open, full) = match self.open.take() {
            Some(open) => match file_id(&self.path) {
                Ok(Some(id)) if id == open.file => (open, false),
                Ok(found) => {
                    let what = if found.is_none() {
                        "deleted"
                    } else {
                        "replaced"
                    };
                    tracing::warn!(
                        path = %self.path.display(),
                        "the session database was {what} while hotspotd ran: opening what is at the path now (a new database if there is none) and writing every session held in memory into it"
                    );
                    self.release(open);
                    (self.open_path()?, true)
                }
                Err(error) => {
                    self.release(open);
                    return Err(error);
                }
            },
            None => (self.open_path()?, true),
        };
        let open = self.open.insert(open);
        Ok(Prepared {
            db: &mut open.db,
            full,
        })
    }

    /// Opens what is at the path. Refuses, untouched, a file that is not a sound hotspotd
    /// database (see `schema::open`).
    fn open_path(&self) -> Result<Open, StoreError> {
        let db = Db::open(&self.path)?;
        let Some(file) = file_id(&self.path)? else {
            close_quietly(db);
            return Err(StoreError::Io {
                path: self.path.clone(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "the file was deleted again as it was opened",
                ),
            });
        };
        Ok(Open {
            db,
            file,
            companions: companions(&self.path),
        })
    }

    /// Closes the database: after a failed write, so that a broken filesystem is not held
    /// open. The next [`prepare`](Self::prepare) opens it again.
    pub(super) fn let_go(&mut self) {
        if let Some(open) = self.open.take() {
            self.release(open);
        }
    }

    /// Closes `open`, and if its file is no longer at the path, removes the `-wal` and `-shm`
    /// it left there.
    fn release(&self, open: Open) {
        close_quietly(open.db);
        if file_id(&self.path).is_ok_and(|found| found == Some(open.file)) {
            return;
        }
        for (path, companion) in open.companions {
            if file_id(&path).is_ok_and(|found| found == Some(companion))
                && let Err(error) = fs::remove_file(&path)
            {
                tracing::warn!(path = %path.display(), error = %crate::text::chain(&error), "cannot remove what the deleted session database left");
            }
        }
    }

    /// Closes the database for good.
    pub(super) fn close(mut self) -> Result<(), StoreError> {
        match self.open.take() {
            Some(open) => open.db.close(),
            None => Ok(()),
        }
    }
}

/// The database [`Writer::prepare`] made ready.
pub(super) struct Prepared<'w> {
    pub db: &'w mut Db,
    /// The next write must carry everything.
    pub full: bool,
}

/// Closes a database being let go of. Failing is expected on a failing disk: closing tries to
/// fold the WAL into the file.
fn close_quietly(db: Db) {
    if let Err(error) = db.close() {
        tracing::debug!(error = %crate::text::chain(&error), "closing the session database after a failure");
    }
}

/// The `-wal` and `-shm` beside `path`, those that exist.
fn companions(path: &Path) -> Vec<(PathBuf, FileId)> {
    ["-wal", "-shm"]
        .into_iter()
        .filter_map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let companion = PathBuf::from(name);
            let id = file_id(&companion).ok().flatten()?;
            Some((companion, id))
        })
        .collect()
}

/// The file at `path`; `None` when there is none.
fn file_id(path: &Path) -> Result<Option<FileId>, StoreError> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(Some(FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        })),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        Loaded, StoredSession,
        ledger::Ledger,
        tests::{mac, running},
    };

    fn held(sessions: u32) -> Ledger {
        let mut ledger = Ledger::new(
            Loaded {
                sessions: Vec::new(),
                clients: Vec::new(),
                meta: None,
                vouchers: Vec::new(),
                trials: Vec::new(),
            },
            0,
        );
        for n in 0..sessions {
            ledger.insert(mac(n), running(n)).expect("storable");
        }
        ledger
    }

    fn write(writer: &mut Writer, ledger: &Ledger) -> Result<bool, StoreError> {
        let prepared = writer.prepare()?;
        let full = prepared.full;
        prepared.db.write(&ledger.changes(full))?;
        Ok(full)
    }

    fn on_disk(path: &Path) -> Vec<StoredSession> {
        let db = Db::open(path).expect("opens");
        let sessions = db.load_all().expect("loads").sessions;
        db.close().expect("closes");
        sessions
    }

    #[test]
    fn the_open_file_is_written_with_only_what_changed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut writer = Writer::new(&path, Db::open(&path).expect("opens"));
        let ledger = held(2);
        assert!(
            !write(&mut writer, &ledger).expect("writes"),
            "not reopened"
        );
        assert_eq!(on_disk(&path), ledger.loaded().sessions);
    }

    #[test]
    fn a_deleted_file_is_made_again_with_everything_held() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut writer = Writer::new(&path, Db::open(&path).expect("opens"));
        let mut ledger = held(3);
        write(&mut writer, &ledger).expect("writes");
        ledger.written(ledger.generation());
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(dir.path().join(format!("sessions.db{suffix}")));
        }
        // Nothing is pending, yet the new file must get every session.
        assert!(write(&mut writer, &ledger).expect("writes"), "reopened");
        assert_eq!(on_disk(&path), ledger.loaded().sessions);
        // From then on it is the open file again.
        assert!(!write(&mut writer, &ledger).expect("writes"));
    }

    #[test]
    fn only_the_file_deleted_its_wal_is_not_applied_to_the_new_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut writer = Writer::new(&path, Db::open(&path).expect("opens"));
        let mut ledger = held(2);
        write(&mut writer, &ledger).expect("writes");
        ledger.written(ledger.generation());
        fs::remove_file(&path).expect("removes");
        assert!(dir.path().join("sessions.db-wal").exists());
        assert!(ledger.remove(1));
        assert!(write(&mut writer, &ledger).expect("writes"), "made again");
        assert_eq!(on_disk(&path), ledger.loaded().sessions);
        writer.close().expect("closes");
        assert_eq!(
            on_disk(&path),
            ledger.loaded().sessions,
            "after the WAL is folded in"
        );
    }

    #[test]
    fn a_replaced_file_that_is_not_a_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut writer = Writer::new(&path, Db::open(&path).expect("opens"));
        let ledger = held(1);
        write(&mut writer, &ledger).expect("writes");
        // Only the file is moved: its WAL stays at the path, and must not be applied to what
        // comes next.
        let aside = dir.path().join("aside.db");
        fs::rename(&path, &aside).expect("moves");
        let noise = vec![0x5a_u8; 4_096];
        fs::write(&path, &noise).expect("writes");
        let error = write(&mut writer, &ledger).expect_err("refused");
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert_eq!(fs::read(&path).expect("reads"), noise, "never overwritten");
        let error = write(&mut writer, &ledger).expect_err("still refused");
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        // Moved away by the operator: a new database gets everything.
        fs::remove_file(&path).expect("removes");
        assert!(write(&mut writer, &ledger).expect("writes"));
        assert_eq!(on_disk(&path), ledger.loaded().sessions);
    }

    #[test]
    fn after_letting_go_the_next_write_opens_the_file_and_carries_everything() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut writer = Writer::new(&path, Db::open(&path).expect("opens"));
        let mut ledger = held(2);
        write(&mut writer, &ledger).expect("writes");
        ledger.written(ledger.generation());
        writer.let_go();
        assert!(
            write(&mut writer, &ledger).expect("writes"),
            "reopened: full"
        );
        assert_eq!(on_disk(&path), ledger.loaded().sessions);
        writer.close().expect("closes");
    }
}
