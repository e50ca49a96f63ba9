//! The store against a real SQLite file in a temporary directory.

use super::*;
use crate::chat::{StoredMessage, StoredOffline, StoredRoom, StoredSnap, StoredUser};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("websocket-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn commit_all(store: &mut Store, changes: Vec<Change>) {
    let batch = changes
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i as u64, c))
        .collect();
    for (ticket, result) in store.commit(batch) {
        assert_eq!(result, Ok(()), "ticket {ticket}");
    }
}

#[test]
fn what_is_committed_is_loaded_again() {
    let dir = TempDir::new("roundtrip");
    let path = dir.0.join("chat.db");
    let (mut store, snapshot) = Store::open(&path).unwrap();
    assert_eq!(snapshot.users, []);
    assert_eq!(snapshot.last_room, 0);
    let user = |id, seq, name: &str| {
        Change::PutUser(StoredUser {
            id,
            seq,
            name: name.into(),
            hash: format!("hash-{name}"),
        })
    };
    commit_all(
        &mut store,
        vec![
            user(7, 1, "ann"),
            user(3, 2, "bob"),
            user(9, 3, "cat"),
            Change::SetPassword {
                id: 3,
                hash: "new".into(),
            },
            Change::PutRoom {
                id: 5,
                epoch: 77,
                name: "lobby".into(),
                question: "q?".into(),
                answer: Some("answer-hash".into()),
            },
            Change::PutSnap(StoredSnap {
                id: 1,
                from: 7,
                to: 9,
                sent: 100,
                received: 0,
                readtime: 5,
                deadline: None,
                text: "psst".into(),
            }),
            Change::ReadSnap {
                id: 1,
                received: 110,
                deadline: Some(115),
            },
            Change::PutOffline(StoredOffline {
                id: 4,
                to: 3,
                from: 7,
                from_name: "ann".into(),
                sent: 120,
                text: "later".into(),
            }),
            Change::PutOffline(StoredOffline {
                id: 5,
                to: 9,
                from: 7,
                from_name: "ann".into(),
                sent: 121,
                text: "gone".into(),
            }),
            // Deleting a user takes its snaps and the messages queued for it.
            Change::DeleteUser { id: 9 },
        ],
    );
    drop(store);
    let (_, snapshot) = Store::open(&path).unwrap();
    let names: Vec<(u64, &str, &str)> = snapshot
        .users
        .iter()
        .map(|u| (u.id, u.name.as_str(), u.hash.as_str()))
        .collect();
    assert_eq!(names, [(7, "ann", "hash-ann"), (3, "bob", "new")]);
    assert_eq!(snapshot.last_user, 9, "the highest userid ever stays");
    // The store was dropped without its thread stopping cleanly: a new epoch.
    let epoch = snapshot.rooms[0].epoch;
    assert_ne!(epoch, 77);
    assert!(epoch > 0 && epoch < 1 << 53);
    assert_eq!(
        snapshot.rooms,
        [StoredRoom {
            id: 5,
            epoch,
            last_seq: 0,
            name: "lobby".into(),
            question: "q?".into(),
            answer: Some("answer-hash".into()),
        }]
    );
    assert_eq!(snapshot.snaps, []);
    assert_eq!(snapshot.last_snap, 1);
    assert_eq!(snapshot.offline.len(), 1);
    assert_eq!(snapshot.offline[0].text, "later");
    // The first start reserved a block of chatroomids: they count as handed out.
    assert_eq!(snapshot.last_room, ROOM_ID_BLOCK);
}

#[test]
fn one_failing_change_fails_alone() {
    let dir = TempDir::new("savepoint");
    let (mut store, _) = Store::open(&dir.0.join("chat.db")).unwrap();
    let user = |id, name: &str| {
        Change::PutUser(StoredUser {
            id,
            seq: id,
            name: name.into(),
            hash: "h".into(),
        })
    };
    let results = store.commit(vec![
        (1, user(1, "ann")),
        (2, user(2, "ann")),
        (3, user(3, "bob")),
    ]);
    assert_eq!(results[0], (1, Ok(())));
    assert!(results[1].1.is_err(), "a duplicate name is refused");
    assert_eq!(results[2], (3, Ok(())));
}

#[test]
fn a_second_server_on_the_same_file_is_refused() {
    let dir = TempDir::new("lock");
    let path = dir.0.join("chat.db");
    let _first = Store::open(&path).unwrap();
    let err = Store::open(&path).err().expect("refused");
    assert!(err.0.contains("another process is using it"), "{err}");
    assert!(err.0.contains("chat.db"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_its_name() {
    let dir = TempDir::new("corrupt");
    let path = dir.0.join("chat.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = Store::open(&path).err().expect("refused");
    assert!(
        err.0
            .starts_with(&format!("data file {}: ", path.display())),
        "{err}"
    );
    assert!(err.0.contains("not a database"), "{err}");
}

#[test]
fn history_is_appended_trimmed_and_keeps_its_epoch_only_after_a_clean_stop() {
    let dir = TempDir::new("history");
    let path = dir.0.join("chat.db");
    let (mut store, _) = Store::open(&path).unwrap();
    let message = |room, seq| {
        Change::AppendHistory(StoredMessage {
            room,
            seq,
            client: 1,
            user: 0,
            name: "ann".into(),
            sent: 100 + seq,
            text: format!("m{seq}"),
        })
    };
    let room = |id| Change::PutRoom {
        id,
        epoch: 77,
        name: "r".into(),
        question: String::new(),
        answer: None,
    };
    let mut changes = vec![room(1), room(2)];
    changes.extend((1..=5).map(|seq| message(1, seq)));
    changes.extend([message(2, 1), Change::TrimHistory { room: 1, from: 4 }]);
    changes.extend([Change::DeleteRoom { id: 2 }, message(2, 2)]);
    commit_all(&mut store, changes);
    // A clean stop: the thread ends when its channel closes.
    let (tx, rx) = crossbeam_channel::unbounded();
    let (to_logic, _from_store) = crossbeam_channel::unbounded();
    let thread = store.spawn(rx, to_logic).unwrap();
    drop(tx);
    thread.join().unwrap();

    let (store, snapshot) = Store::open(&path).unwrap();
    assert_eq!(snapshot.rooms.len(), 1);
    assert_eq!(
        (snapshot.rooms[0].epoch, snapshot.rooms[0].last_seq),
        (77, 5)
    );
    let kept: Vec<(u64, u64, &str)> = snapshot
        .history
        .iter()
        .map(|m| (m.room, m.seq, m.text.as_str()))
        .collect();
    // Room 2's late message outlived its room in the table; the core skips it.
    assert_eq!(kept, [(1, 4, "m4"), (1, 5, "m5"), (2, 2, "m2")]);
    // Everything trimmed: the numbering still goes on from the last one.
    let mut store = store;
    commit_all(&mut store, vec![Change::TrimHistory { room: 1, from: 6 }]);
    drop(store); // not a clean stop
    let (_, snapshot) = Store::open(&path).unwrap();
    assert_eq!(snapshot.rooms[0].last_seq, 5);
    assert_ne!(
        snapshot.rooms[0].epoch, 77,
        "a new epoch after an unclean stop"
    );
}
