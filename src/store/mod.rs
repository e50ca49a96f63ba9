//! The store: one SQLite database owned by one thread.
//!
//! The logic thread never touches the disk. It sends [`Change`]s with a ticket; this thread
//! commits them in **group commits** (everything that arrived while the previous commit ran
//! goes into the next transaction, each request under its own savepoint so one bad change
//! fails alone) and answers every ticket once its transaction is durable. WAL mode with
//! `synchronous=FULL`: a commit is on disk when it is answered, so a reply that says a change
//! happened survives `kill -9` and power loss alike.

mod schema;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use log::{error, info};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::chat::{Change, ROOM_ID_BLOCK, Snapshot};
use crate::events::ToLogic;

/// A request for the store thread.
pub type Request = (u64, Change);

/// An open database, loaded and ready for its thread.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Held for the process's life: a second server on the same file is refused at start.
    _lock: File,
}

/// Why the store could not start: one line naming the file and the cause.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Store {
    /// Opens (or creates) the database at `path`, brings its schema up to date, reserves the
    /// next block of chatroomids and loads everything that survives a restart.
    pub fn open(path: &Path) -> Result<(Store, Snapshot), OpenError> {
        // A file-size limit (RLIMIT_FSIZE) must fail the write, which the store reports, not
        // kill the whole server with SIGXFSZ.
        // SAFETY: setting a signal's disposition to "ignore" has no memory effects.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            OpenError(format!("data file {}: {what}: {e}", path.display()))
        };
        let lock = lock(path).map_err(|e| fail("cannot lock", &e))?;
        let conn = Connection::open(path).map_err(|e| fail("cannot open", &e))?;
        conn.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(|e| fail("cannot open", &e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| fail("not a usable database", &e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail("cannot use write-ahead logging", &mode));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| fail("cannot set synchronous", &e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| fail("cannot enable foreign keys", &e))?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
            _lock: lock,
        };
        schema::migrate(&mut store.conn).map_err(|e| fail("cannot update the schema", &e))?;
        new_epochs_after_crash(&store.conn)
            .map_err(|e| fail("cannot write (read-only, or the disk is full?)", &e))?;
        let snapshot = store.load().map_err(|e| fail("cannot read", &e))?;
        // Temporary rooms are not stored; their ids come from a reservation made here (the
        // core counts on it, see `Rooms::restore_last`), so none is handed out again after a
        // restart.
        let up_to = snapshot.last_room + ROOM_ID_BLOCK;
        set_counter(&store.conn, "room_reserved", up_to)
            .map_err(|e| fail("cannot write (read-only, or the disk is full?)", &e))?;
        info!(
            "data file {}: {} users, {} rooms, {} snaps, {} queued messages",
            path.display(),
            snapshot.users.len(),
            snapshot.rooms.len(),
            snapshot.snaps.len(),
            snapshot.offline.len()
        );
        Ok((store, snapshot))
    }

    fn load(&self) -> rusqlite::Result<Snapshot> {
        let c = &self.conn;
        let mut snapshot = Snapshot {
            last_user: counter(c, "last_user")?,
            last_room: counter(c, "room_reserved")?.max(counter(c, "last_room")?),
            last_snap: counter(c, "last_snap")?,
            last_offline: counter(c, "last_offline")?,
            ..Snapshot::default()
        };
        let mut users = c.prepare("SELECT id, seq, name, hash FROM users ORDER BY seq")?;
        snapshot.users = users
            .query_map([], |r| {
                Ok(crate::chat::StoredUser {
                    id: int(r.get(0)?),
                    seq: int(r.get(1)?),
                    name: r.get(2)?,
                    hash: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut rooms = c.prepare(
            "SELECT id, name, question, answer, epoch, \
             max(trimmed - 1, (SELECT coalesce(max(seq), 0) FROM history WHERE room = rooms.id)) \
             FROM rooms ORDER BY id",
        )?;
        snapshot.rooms = rooms
            .query_map([], |r| {
                Ok(crate::chat::StoredRoom {
                    id: int(r.get(0)?),
                    name: r.get(1)?,
                    question: r.get(2)?,
                    answer: r.get(3)?,
                    epoch: int(r.get(4)?),
                    last_seq: int(r.get(5)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut history = c.prepare(
            "SELECT room, seq, client, user, username, sent, text FROM history \
             ORDER BY room, seq",
        )?;
        snapshot.history = history
            .query_map([], |r| {
                Ok(crate::chat::StoredMessage {
                    room: int(r.get(0)?),
                    seq: int(r.get(1)?),
                    client: int(r.get(2)?),
                    user: int(r.get(3)?),
                    name: r.get(4)?,
                    sent: int(r.get(5)?),
                    text: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut snaps = c.prepare(
            "SELECT id, sender, recipient, sent, received, readtime, deadline, text \
             FROM snaps ORDER BY id",
        )?;
        snapshot.snaps = snaps
            .query_map([], |r| {
                Ok(crate::chat::StoredSnap {
                    id: int(r.get(0)?),
                    from: int(r.get(1)?),
                    to: int(r.get(2)?),
                    sent: int(r.get(3)?),
                    received: int(r.get(4)?),
                    readtime: int(r.get(5)?),
                    deadline: r.get::<_, Option<i64>>(6)?.map(int),
                    text: r.get(7)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut offline = c.prepare(
            "SELECT id, recipient, sender, sender_name, sent, text FROM offline ORDER BY id",
        )?;
        snapshot.offline = offline
            .query_map([], |r| {
                Ok(crate::chat::StoredOffline {
                    id: int(r.get(0)?),
                    to: int(r.get(1)?),
                    from: int(r.get(2)?),
                    from_name: r.get(3)?,
                    sent: int(r.get(4)?),
                    text: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(snapshot)
    }

    /// Runs the store thread until `requests` closes, answering to `to_logic`. Everything
    /// received before the close is committed first.
    pub fn spawn(
        self,
        requests: Receiver<Request>,
        to_logic: Sender<Vec<ToLogic>>,
    ) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new().name("store".into()).spawn(move || {
            crate::crash::thread_started();
            self.run(requests, to_logic)
        })
    }

    fn run(mut self, requests: Receiver<Request>, to_logic: Sender<Vec<ToLogic>>) {
        let mut whole = true;
        while let Ok(first) = requests.recv() {
            // Group commit: whatever queued up while the last commit ran goes in this one.
            let batch: Vec<Request> = std::iter::once(first).chain(requests.try_iter()).collect();
            let started = std::time::Instant::now();
            let results = self.commit(batch);
            let took = started.elapsed();
            whole &= results.iter().all(|(_, r)| r.is_ok());
            // During shutdown the logic thread may be gone; what it sent is still committed.
            let _ = to_logic.send(vec![ToLogic::Stored { results, took }]);
        }
        // Everything the logic thread sent is committed: room history is whole, and the next
        // start may keep its epochs.
        if whole && let Err(e) = set_value(&self.conn, CLEAN, 1) {
            error!(
                "store {}: cannot mark the shutdown clean: {e}",
                self.path.display()
            );
        }
        info!("store {}: closed", self.path.display());
    }

    /// One transaction for the whole batch, a savepoint per change.
    fn commit(&mut self, batch: Vec<Request>) -> Vec<(u64, Result<(), String>)> {
        let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
        let everything_failed = |e: &dyn std::fmt::Display| {
            let e = e.to_string();
            error!("store {}: commit failed: {e}", self.path.display());
            tickets.iter().map(|&t| (t, Err(e.clone()))).collect()
        };
        let tx = match self.conn.transaction() {
            Ok(tx) => tx,
            Err(e) => return everything_failed(&e),
        };
        let mut results = Vec::with_capacity(batch.len());
        let mut tx = tx;
        for (ticket, change) in batch {
            let result = apply_one(&mut tx, &change).map_err(|e| e.to_string());
            if let Err(e) = &result {
                error!("store {}: {change:?} failed: {e}", self.path.display());
            }
            results.push((ticket, result));
        }
        match tx.commit() {
            Ok(()) => results,
            Err(e) => everything_failed(&e),
        }
    }
}

/// Applies one change under its own savepoint, so a failure undoes it alone. A history
/// message is one row written in one statement, which SQLite undoes by itself if it fails: it
/// needs no savepoint, and at a busy room's message rate the savepoint would cost more than
/// the row.
fn apply_one(tx: &mut Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    if let Change::AppendHistory(_) = change {
        return schema::apply(tx, change);
    }
    let sp = tx.savepoint()?;
    schema::apply(&sp, change)?;
    sp.commit()
}

/// Takes an exclusive advisory lock on the data file: two servers writing one file would each
/// believe their own counters.
fn lock(path: &Path) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            std::io::Error::other("another process is using it")
        } else {
            e
        });
    }
    Ok(file)
}

fn counter(c: &Connection, name: &str) -> rusqlite::Result<u64> {
    let v: Option<i64> = c
        .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(v.map_or(0, int))
}

/// The counter that says the last run committed everything it was sent before it stopped.
const CLEAN: &str = "clean_shutdown";

/// Room history is written behind, so a crash may have lost its newest messages, whose
/// sequence numbers clients may have seen: after one, every room gets a new epoch, so that no
/// such number is trusted (§12). Marks this run as not (yet) cleanly stopped.
fn new_epochs_after_crash(c: &Connection) -> rusqlite::Result<()> {
    let rooms: i64 = c.query_row("SELECT count(*) FROM rooms", [], |r| r.get(0))?;
    if rooms > 0 && counter(c, CLEAN)? == 0 {
        info!("the last run did not stop cleanly: new history epochs");
        c.execute(
            "UPDATE rooms SET epoch = (random() & 9007199254740990) + 1",
            [],
        )?;
    }
    set_value(c, CLEAN, 0)
}

/// Sets a counter to `value`, up or down.
fn set_value(c: &Connection, name: &str, value: u64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        params![name, sql(value)],
    )?;
    Ok(())
}

fn set_counter(c: &Connection, name: &str, value: u64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
        params![name, sql(value)],
    )?;
    Ok(())
}

/// SQLite integers are signed; every id and time here is 0..=i64::MAX (the protocol's range).
fn sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn int(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests;
