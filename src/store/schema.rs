//! The database schema, its migrations, and how each [`Change`] is written.
//!
//! `PRAGMA user_version` holds the schema version; each migration runs once, in a transaction,
//! and bumps it. Statements are prepared once per connection (`prepare_cached`).

use rusqlite::{Connection, params};

use super::{set_counter, sql};
use crate::chat::Change;

/// Each entry brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users, persistent rooms, snaps, offline messages, and the id counters.
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
     CREATE TABLE users (
         id INTEGER PRIMARY KEY,
         seq INTEGER NOT NULL,
         name TEXT NOT NULL UNIQUE,
         hash TEXT NOT NULL
     ) STRICT;
     CREATE TABLE rooms (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         question TEXT NOT NULL,
         answer TEXT
     ) STRICT;
     CREATE TABLE snaps (
         id INTEGER PRIMARY KEY,
         sender INTEGER NOT NULL,
         recipient INTEGER NOT NULL,
         sent INTEGER NOT NULL,
         received INTEGER NOT NULL,
         readtime INTEGER NOT NULL,
         deadline INTEGER,
         text TEXT NOT NULL
     ) STRICT;
     CREATE INDEX snaps_by_sender ON snaps (sender);
     CREATE INDEX snaps_by_recipient ON snaps (recipient);
     CREATE TABLE offline (
         id INTEGER PRIMARY KEY,
         recipient INTEGER NOT NULL,
         sender INTEGER NOT NULL,
         sender_name TEXT NOT NULL,
         sent INTEGER NOT NULL,
         text TEXT NOT NULL
     ) STRICT;
     CREATE INDEX offline_by_recipient ON offline (recipient);",
    // 2: room history (§12). Each persistent room gets an epoch (existing ones a random one);
    // `trimmed` is the lowest sequence number not trimmed away, so the next number is known
    // even when every message was trimmed.
    "ALTER TABLE rooms ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE rooms ADD COLUMN trimmed INTEGER NOT NULL DEFAULT 1;
     UPDATE rooms SET epoch = (random() & 9007199254740990) + 1;
     CREATE TABLE history (
         room INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         client INTEGER NOT NULL,
         user INTEGER NOT NULL,
         username TEXT NOT NULL,
         sent INTEGER NOT NULL,
         text TEXT NOT NULL,
         PRIMARY KEY (room, seq)
     ) STRICT, WITHOUT ROWID;",
];

/// Brings the schema up to date. A database from a newer server is refused rather than
/// misread.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "schema version {version} is newer than this server's {}",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Writes one change.
pub fn apply(c: &Connection, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::PutUser(u) => {
            c.prepare_cached("INSERT INTO users (id, seq, name, hash) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![sql(u.id), sql(u.seq), u.name, u.hash])?;
            set_counter(c, "last_user", u.id)
        }
        Change::SetPassword { id, hash } => {
            c.prepare_cached("UPDATE users SET hash = ?2 WHERE id = ?1")?
                .execute(params![sql(*id), hash])?;
            Ok(())
        }
        Change::DeleteUser { id } => {
            let id = sql(*id);
            c.prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute([id])?;
            c.prepare_cached("DELETE FROM snaps WHERE sender = ?1 OR recipient = ?1")?
                .execute([id])?;
            c.prepare_cached("DELETE FROM offline WHERE recipient = ?1")?
                .execute([id])?;
            Ok(())
        }
        Change::PutRoom {
            id,
            epoch,
            name,
            question,
            answer,
        } => {
            c.prepare_cached(
                "INSERT INTO rooms (id, name, question, answer, epoch) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![sql(*id), name, question, answer, sql(*epoch)])?;
            set_counter(c, "last_room", *id)
        }
        Change::DeleteRoom { id } => {
            c.prepare_cached("DELETE FROM rooms WHERE id = ?1")?
                .execute([sql(*id)])?;
            c.prepare_cached("DELETE FROM history WHERE room = ?1")?
                .execute([sql(*id)])?;
            Ok(())
        }
        Change::AppendHistory(m) => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO history (room, seq, client, user, username, sent, text) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                sql(m.room),
                sql(m.seq),
                sql(m.client),
                sql(m.user),
                m.name,
                sql(m.sent),
                m.text
            ])?;
            Ok(())
        }
        Change::TrimHistory { room, from } => {
            c.prepare_cached("DELETE FROM history WHERE room = ?1 AND seq < ?2")?
                .execute(params![sql(*room), sql(*from)])?;
            c.prepare_cached("UPDATE rooms SET trimmed = max(trimmed, ?2) WHERE id = ?1")?
                .execute(params![sql(*room), sql(*from)])?;
            Ok(())
        }
        Change::PutSnap(s) => {
            c.prepare_cached(
                "INSERT INTO snaps (id, sender, recipient, sent, received, readtime, deadline, text) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                sql(s.id),
                sql(s.from),
                sql(s.to),
                sql(s.sent),
                sql(s.received),
                sql(s.readtime),
                s.deadline.map(sql),
                s.text
            ])?;
            set_counter(c, "last_snap", s.id)
        }
        Change::ReadSnap {
            id,
            received,
            deadline,
        } => {
            c.prepare_cached("UPDATE snaps SET received = ?2, deadline = ?3 WHERE id = ?1")?
                .execute(params![sql(*id), sql(*received), deadline.map(sql)])?;
            Ok(())
        }
        Change::DeleteSnap { id } => {
            c.prepare_cached("DELETE FROM snaps WHERE id = ?1")?
                .execute([sql(*id)])?;
            Ok(())
        }
        Change::PutOffline(m) => {
            c.prepare_cached(
                "INSERT INTO offline (id, recipient, sender, sender_name, sent, text) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                sql(m.id),
                sql(m.to),
                sql(m.from),
                m.from_name,
                sql(m.sent),
                m.text
            ])?;
            set_counter(c, "last_offline", m.id)
        }
        Change::DeleteOffline { ids } => {
            let mut delete = c.prepare_cached("DELETE FROM offline WHERE id = ?1")?;
            for id in ids {
                delete.execute([sql(*id)])?;
            }
            Ok(())
        }
        Change::ReserveRooms { up_to } => set_counter(c, "room_reserved", *up_to),
    }
}
