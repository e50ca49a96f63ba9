//! Snaps: private messages to a user that live until they expire (`docs/protocol.md` §6).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::durable::{Change, StoredSnap};
use super::limits::{Counts, Quota};
use super::pending::{Step, Then, Work};
use super::{Answer, Chat, ChatError, ConnId, Event, ReplyTo, Sink, SnapInfo};

pub(super) struct Snap {
    pub from: u64,
    pub to: u64,
    pub sent: u64,
    /// When the recipient first read it; 0 until then.
    pub received: u64,
    pub readtime: u64,
    /// When it stops existing: `expirelength` after sending, or `readtime` after the first
    /// read, whichever comes first; `None` for never.
    pub deadline: Option<u64>,
    pub text: String,
    /// The sender's address, for the per-address quota.
    pub addr: Option<u128>,
}

impl Snap {
    pub fn info(&self, id: u64) -> SnapInfo<'_> {
        SnapInfo {
            id,
            to: self.to,
            from: self.from,
            sent: self.sent,
            received: self.received,
            readtime: self.readtime,
            text: &self.text,
        }
    }

    fn live(&self, now: u64) -> bool {
        self.deadline.is_none_or(|d| now < d)
    }
}

/// All snaps, indexed so that a user's snaps and the next ones to expire are found without
/// scanning every snap.
#[derive(Default)]
pub(super) struct Snaps {
    by_id: BTreeMap<u64, Snap>,
    /// Snap ids by user, both sender and recipient.
    by_user: HashMap<u64, BTreeSet<u64>>,
    /// (deadline, snap id) of every snap that has one.
    deadlines: BTreeSet<(u64, u64)>,
    last_id: u64,
    pub ids: super::Ids,
    /// Live snaps per sending user, per recipient, per sending address.
    pub sent_by: Counts<u64>,
    pub sent_to: Counts<u64>,
    pub sent_from: Counts<u128>,
}

impl Snaps {
    /// The next snapid; ids are never handed out twice, even after a restart.
    pub fn next_id(&mut self) -> u64 {
        self.last_id = self.ids.after(self.last_id);
        self.last_id
    }

    /// After a restart: the highest snapid ever handed out.
    pub fn restore_last(&mut self, last: u64) {
        self.last_id = self.last_id.max(last);
    }

    pub fn insert(&mut self, id: u64, snap: Snap) {
        self.last_id = self.last_id.max(id);
        self.by_user.entry(snap.from).or_default().insert(id);
        self.by_user.entry(snap.to).or_default().insert(id);
        self.sent_by.add(snap.from);
        self.sent_to.add(snap.to);
        if let Some(a) = snap.addr {
            self.sent_from.add(a);
        }
        if let Some(d) = snap.deadline {
            self.deadlines.insert((d, id));
        }
        self.by_id.insert(id, snap);
    }

    /// A snap as the store keeps it, and back.
    pub fn stored(id: u64, snap: &Snap) -> StoredSnap {
        StoredSnap {
            id,
            from: snap.from,
            to: snap.to,
            sent: snap.sent,
            received: snap.received,
            readtime: snap.readtime,
            deadline: snap.deadline,
            text: snap.text.clone(),
        }
    }

    /// A stored snap, sent from `addr` (unknown after a restart: such snaps count against
    /// their sender and recipient only).
    pub fn restore(&mut self, s: StoredSnap, addr: Option<u128>) {
        let snap = Snap {
            from: s.from,
            to: s.to,
            sent: s.sent,
            received: s.received,
            readtime: s.readtime,
            deadline: s.deadline,
            text: s.text,
            addr,
        };
        self.insert(s.id, snap);
    }

    pub fn get(&self, id: u64) -> Option<&Snap> {
        self.by_id.get(&id)
    }

    /// The snap, unless it is unknown or past its deadline (a tick may not have removed it
    /// yet).
    pub fn live(&self, id: u64, now: u64) -> Option<&Snap> {
        self.by_id.get(&id).filter(|s| s.live(now))
    }

    /// The deadline a first read at `now` gives: `readtime` from now, unless the snap expires
    /// sooner anyway.
    pub fn deadline_after_read(&self, id: u64, now: u64) -> Option<u64> {
        let snap = self.by_id.get(&id)?;
        let deadline = now.saturating_add(snap.readtime);
        Some(snap.deadline.map_or(deadline, |d| d.min(deadline)))
    }

    /// Stamps the recipient's first read at `now` and sets the deadline it brings.
    pub fn mark_read(&mut self, id: u64, now: u64) {
        let Some(deadline) = self.deadline_after_read(id, now) else {
            return;
        };
        let snap = self.by_id.get_mut(&id).expect("just found");
        snap.received = now;
        if let Some(old) = snap.deadline.replace(deadline) {
            self.deadlines.remove(&(old, id));
        }
        self.deadlines.insert((deadline, id));
    }

    pub fn remove(&mut self, id: u64) {
        let Some(snap) = self.by_id.remove(&id) else {
            return;
        };
        self.sent_by.sub(snap.from);
        self.sent_to.sub(snap.to);
        if let Some(a) = snap.addr {
            self.sent_from.sub(a);
        }
        for user in [snap.from, snap.to] {
            if let Some(ids) = self.by_user.get_mut(&user) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_user.remove(&user);
                }
            }
        }
        if let Some(d) = snap.deadline {
            self.deadlines.remove(&(d, id));
        }
    }

    /// Removes every snap whose deadline has come; returns their ids.
    pub fn expire(&mut self, now: u64) -> Vec<u64> {
        let mut gone = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.remove(id);
            gone.push(id);
        }
        gone
    }

    /// Removes every snap to or from `user`, so a later user given the same userid cannot
    /// read them.
    pub fn remove_user(&mut self, user: u64) {
        for id in self.by_user.get(&user).cloned().unwrap_or_default() {
            self.remove(id);
        }
    }

    /// The live snaps to or from `user`, oldest first.
    pub fn of_user(&self, user: u64, now: u64) -> impl Iterator<Item = (u64, &Snap)> {
        let ids = self.by_user.get(&user).into_iter().flatten();
        ids.filter_map(move |&id| Some((id, self.live(id, now)?)))
    }
}

impl Chat {
    /// `sendsnap`: committed, then `snap_sent` and the snap to the recipient's connections.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_snap(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        to: u64,
        expire: u64,
        readtime: u64,
        text: String,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let c = self.conns.get(conn).expect("open");
        let from = c.user().ok_or(ChatError::NotLoggedIn)?;
        let addr = c.peer.quota_key();
        // A snap nobody can ever read would be storage for free.
        if to == 0 || self.users.get(to).is_none() {
            return Err(ChatError::UserNotFound);
        }
        let limits = &self.limits;
        if expire > limits.snap_lifetime || readtime > limits.snap_lifetime {
            return Err(ChatError::QuotaExceeded(Quota::SnapLifetime));
        }
        if self.snaps.sent_by.get(&from) >= limits.snaps_per_sender
            || addr.is_some_and(|a| self.snaps.sent_from.get(&a) >= limits.snaps_per_address)
        {
            return Err(ChatError::QuotaExceeded(Quota::SnapsPerSender));
        }
        if self.snaps.sent_to.get(&to) >= limits.snaps_per_recipient {
            return Err(ChatError::QuotaExceeded(Quota::SnapsPerRecipient));
        }
        // "No time limit" is the longest life the server keeps a snap.
        let expire = if expire == 0 {
            limits.snap_lifetime
        } else {
            expire
        };
        let id = self.snaps.next_id();
        let snap = Snap {
            from,
            to,
            sent: now,
            received: 0,
            readtime,
            deadline: Some(now.saturating_add(expire)),
            text,
            addr,
        };
        let stored = Snaps::stored(id, &snap);
        let work = Work::Store(Change::PutSnap(stored.clone()));
        self.park(conn, re, Then::SnapStored(stored, addr), work, out)
    }

    pub(super) fn snap_stored(
        &mut self,
        step: Step,
        stored: StoredSnap,
        addr: Option<u128>,
        ok: bool,
        out: &mut dyn Sink,
    ) {
        if !ok {
            return self.finish(step, Err(self.store_failed()), out);
        }
        let (id, to) = (stored.id, stored.to);
        self.snaps.restore(stored, addr);
        // The sender learns the id before anyone sees the snap.
        super::pending::reply(&step, Ok(Answer::SnapSent { snap: id }), out);
        let event = Event::Snap(self.snaps.get(id).expect("just added").info(id));
        self.tell_conns(self.snap_receivers(to, None), 0, &event, out);
        self.served(step, out);
    }

    pub(super) fn get_snaps(
        &mut self,
        conn: ConnId,
        now: u64,
        re: &ReplyTo<'_>,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let c = self.conns.get_mut(conn).expect("open");
        let user = c.user().ok_or(ChatError::NotLoggedIn)?;
        c.snaps_enabled = true;
        re.send(out, Ok(Answer::Done));
        for (id, snap) in self.snaps.of_user(user, now) {
            self.tell_conns([conn], 0, &Event::Snap(snap.info(id)), out);
        }
        Ok(Answer::Silent)
    }

    /// `readsnap`: the recipient's first read is committed before anyone sees it.
    pub(super) fn read_snap(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        id: u64,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let reader = self
            .conns
            .get(conn)
            .and_then(|c| c.user())
            .ok_or(ChatError::NotLoggedIn)?;
        let snap = self.snaps.live(id, now).ok_or(ChatError::SnapNotFound)?;
        if snap.from != reader && snap.to != reader {
            return Err(ChatError::NotYourSnap);
        }
        if reader == snap.to && snap.received == 0 {
            let deadline = self.snaps.deadline_after_read(id, now);
            let work = Work::Store(Change::ReadSnap {
                id,
                received: now,
                deadline,
            });
            return self.park(conn, re, Then::SnapRead { snap: id }, work, out);
        }
        self.show_snap(conn, id, out);
        Ok(Answer::Silent)
    }

    pub(super) fn snap_read(&mut self, step: Step, id: u64, ok: bool, out: &mut dyn Sink) {
        if !ok {
            return self.finish(step, Err(self.store_failed()), out);
        }
        self.snaps.mark_read(id, step.now);
        if let Some(conn) = step.conn {
            self.show_snap(conn, id, out);
        }
        self.finish(step, Ok(Answer::Silent), out);
    }

    /// The snap as it is now, to the reader and the other party's snap-enabled connections.
    fn show_snap(&self, reader: ConnId, id: u64, out: &mut dyn Sink) {
        let Some(snap) = self.snaps.get(id) else {
            return;
        };
        let user = self.conns.get(reader).and_then(|c| c.user()).unwrap_or(0);
        let other = if user == snap.to { snap.from } else { snap.to };
        let mut to = vec![reader];
        to.extend(self.snap_receivers(other, Some(reader)));
        self.tell_conns(to, 0, &Event::Snap(snap.info(id)), out);
    }

    /// Snaps past their deadline disappear, from memory and from the store.
    pub(super) fn expire_snaps(&mut self, now: u64, out: &mut dyn Sink) {
        for id in self.snaps.expire(now) {
            self.background(Then::Nothing, Change::DeleteSnap { id }, out);
        }
    }

    /// The snap-enabled connections of `user`, except `except`.
    pub(super) fn snap_receivers(&self, user: u64, except: Option<ConnId>) -> Vec<ConnId> {
        let conns = self.users.get(user).into_iter().flat_map(|u| &u.conns);
        conns
            .copied()
            .filter(|&c| Some(c) != except && self.conns.get(c).is_some_and(|c| c.snaps_enabled))
            .collect()
    }
}
