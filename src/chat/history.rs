//! Room history (`docs/protocol.md` §12): every room message gets a per-room sequence number,
//! and a room keeps its last `history_size` messages, none older than `history_ttl`, so a client
//! can page backwards and a reconnecting one can get exactly what it missed.
//!
//! A room's **epoch** names one unbroken run of sequence numbers: it is drawn at random when
//! the room is made (and, by the store, whenever stored history may have lost its tail), so a
//! sequence number a client remembers from another epoch is never trusted.
//!
//! History is write-behind: a persistent room's messages are sent to the store without waiting
//! (`Change::AppendHistory`), trimmed there once a tick (`Change::TrimHistory`); the chat never
//! waits for the disk.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use super::durable::{Change, StoredMessage};
use super::{Answer, Chat, ChatError, ConnId, Message, ReplyTo, Sink};

/// Most messages in one `history` page, and in one reply of a resume (§12).
pub const MAX_PAGE: usize = 100;

/// Epochs are below 2^53, so a JavaScript number holds one exactly.
const EPOCH_MASK: u64 = (1 << 53) - 1;

/// One kept message: the sender as it was when it spoke.
#[derive(Debug)]
struct Kept {
    seq: u64,
    client: u64,
    user: u64,
    name: Box<str>,
    sent: u64,
    text: Box<str>,
}

impl Kept {
    fn message(&self) -> Message<'_> {
        Message {
            seq: self.seq,
            client: self.client,
            user: self.user,
            name: &self.name,
            sent: self.sent,
            text: &self.text,
        }
    }
}

/// One room's kept messages, oldest first, with consecutive sequence numbers.
#[derive(Debug)]
pub(super) struct History {
    pub epoch: u64,
    /// The newest sequence number handed out (0 before the first message).
    last: u64,
    kept: VecDeque<Kept>,
    /// The store may still hold messages from this sequence number on: below it, they were
    /// trimmed there too.
    stored_from: u64,
}

/// Where a resume starts.
pub(super) enum Since {
    /// Everything after the client's sequence number is kept: these many messages.
    Complete(std::ops::Range<usize>),
    /// Some of what the client missed is gone (or its epoch is not the room's).
    Lost,
}

impl History {
    pub fn new(epoch: u64) -> History {
        History {
            epoch,
            last: 0,
            kept: VecDeque::new(),
            stored_from: 1,
        }
    }

    /// A persistent room's history as loaded (`messages` in sequence order). Positions are
    /// computed from sequence numbers, so only the newest consecutive run is kept.
    pub fn restore(epoch: u64, last: u64, mut messages: Vec<StoredMessage>) -> History {
        let stored_from = messages.first().map_or(last + 1, |m| m.seq);
        let last = messages.last().map_or(last, |m| m.seq.max(last));
        let run = messages
            .windows(2)
            .rposition(|w| w[1].seq != w[0].seq + 1)
            .map_or(0, |i| i + 1);
        messages.drain(..run);
        let kept = messages
            .into_iter()
            .map(|m| Kept {
                seq: m.seq,
                client: m.client,
                user: m.user,
                name: m.name.into(),
                sent: m.sent,
                text: m.text.into(),
            })
            .collect();
        History {
            epoch,
            last,
            kept,
            stored_from,
        }
    }

    /// Numbers a new message and keeps it (when `size` > 0), dropping the oldest beyond `size`.
    pub fn append(&mut self, message: Message<'_>, size: usize) -> u64 {
        self.last += 1;
        if size > 0 {
            while self.kept.len() >= size {
                self.kept.pop_front();
            }
            self.kept.push_back(Kept {
                seq: self.last,
                client: message.client,
                user: message.user,
                name: message.name.into(),
                sent: message.sent,
                text: message.text.into(),
            });
        }
        self.last
    }

    /// Drops the messages sent before `before` (unix seconds).
    pub fn expire(&mut self, before: u64) {
        while self.kept.front().is_some_and(|k| k.sent < before) {
            self.kept.pop_front();
        }
    }

    /// Drops messages beyond `size` (a restart with a smaller `--history-size`).
    pub fn shrink(&mut self, size: usize) {
        while self.kept.len() > size {
            self.kept.pop_front();
        }
    }

    /// The store holds messages the core no longer keeps: trim it below the oldest kept one.
    pub fn trim_due(&mut self) -> Option<u64> {
        let from = self.kept.front().map_or(self.last + 1, |k| k.seq);
        (from > self.stored_from).then(|| {
            self.stored_from = from;
            from
        })
    }

    /// The newest `limit` kept messages with a sequence number below `before` (any, for 0),
    /// oldest first.
    pub fn page(&self, before: u64, limit: usize) -> impl Iterator<Item = Message<'_>> {
        let end = if before == 0 {
            self.kept.len()
        } else {
            self.kept.partition_point(|k| k.seq < before)
        };
        self.kept
            .range(end.saturating_sub(limit)..end)
            .map(Kept::message)
    }

    /// What a client that saw up to `seq` in `epoch` missed. `seq` beyond the newest message
    /// of this epoch is a client error.
    pub fn since(&self, epoch: u64, seq: u64) -> Result<Since, ChatError> {
        if epoch != self.epoch {
            return Ok(Since::Lost);
        }
        if seq > self.last {
            return Err(ChatError::BadHistoryRange);
        }
        let first = self.kept.front().map_or(self.last + 1, |k| k.seq);
        if seq + 1 < first {
            return Ok(Since::Lost);
        }
        let start = (seq + 1 - first) as usize;
        Ok(Since::Complete(start..self.kept.len()))
    }

    /// Kept messages by position, oldest first.
    pub fn slice(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = Message<'_>> {
        self.kept.range(range).map(Kept::message)
    }
}

/// Draws room epochs: random per process, never 0, below 2^53.
#[derive(Default)]
pub(super) struct Epochs {
    keys: RandomState,
    drawn: u64,
}

impl Epochs {
    pub fn draw(&mut self) -> u64 {
        self.drawn += 1;
        (self.keys.hash_one(self.drawn) & EPOCH_MASK).max(1)
    }
}

impl Chat {
    /// `gethistory` / JSON `history`: a page of the room's kept messages, for members.
    pub(super) fn history(
        &self,
        conn: ConnId,
        room: u64,
        before: u64,
        limit: u64,
    ) -> Result<Answer<'_>, ChatError> {
        let r = self.rooms.get(room).ok_or(ChatError::RoomNotFound)?;
        if !r.members.contains(conn) {
            return Err(ChatError::NotAMember);
        }
        let limit = page_size(limit);
        Ok(Answer::History {
            room,
            name: &r.name,
            epoch: r.history.epoch,
            messages: r.history.page(before, limit).collect(),
        })
    }

    /// `resume`: what a member missed since `seq` in `epoch`, in replies of at most
    /// [`MAX_PAGE`] messages, then whether that was all of it.
    pub(super) fn resume_history(
        &self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        room: u64,
        epoch: u64,
        seq: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let r = self.rooms.get(room).ok_or(ChatError::RoomNotFound)?;
        if !r.members.contains(conn) {
            return Err(ChatError::NotAMember);
        }
        let complete = match r.history.since(epoch, seq)? {
            Since::Lost => false,
            Since::Complete(range) => {
                for start in range.clone().step_by(MAX_PAGE) {
                    let end = (start + MAX_PAGE).min(range.end);
                    let page = Answer::History {
                        room,
                        name: &r.name,
                        epoch: r.history.epoch,
                        messages: r.history.slice(start..end).collect(),
                    };
                    re.send(out, Ok(page));
                }
                true
            }
        };
        Ok(Answer::Recovered {
            room,
            name: &r.name,
            complete,
        })
    }

    /// Numbers and keeps a message said in `room` now, and hands it to the store when the
    /// room is persistent (write-behind: nothing waits for it). Returns (epoch, seq).
    pub(super) fn keep(
        &mut self,
        room: u64,
        conn: ConnId,
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> (u64, u64) {
        let who = self.who(conn);
        let (client, user) = (who.client, who.user);
        let name: Box<str> = who.name.into();
        self.keep_from(room, client, user, name, text, now, out)
    }

    /// [`Chat::keep`] for a sender described by hand (the server itself, for the API).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keep_from(
        &mut self,
        room: u64,
        client: u64,
        user: u64,
        name: Box<str>,
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> (u64, u64) {
        let size = self.limits.history_size;
        let r = self.rooms.get_mut(room).expect("member of it");
        let message = Message {
            seq: 0,
            client,
            user,
            name: &name,
            sent: now,
            text,
        };
        let seq = r.history.append(message, size);
        let epoch = r.history.epoch;
        if !r.temporary && size > 0 {
            let stored = StoredMessage {
                room,
                seq,
                client,
                user,
                name: name.into(),
                sent: now,
                text: text.to_owned(),
            };
            self.write_behind(Change::AppendHistory(stored), out);
        }
        (epoch, seq)
    }

    /// Once a tick: drops messages past the TTL, and trims the store to what is kept.
    pub(super) fn expire_history(&mut self, now: u64, out: &mut dyn Sink) {
        let before = now.saturating_sub(self.limits.history_ttl);
        let mut trims = Vec::new();
        for (id, r) in self.rooms.iter_mut() {
            r.history.expire(before);
            if !r.temporary
                && let Some(from) = r.history.trim_due()
            {
                trims.push(Change::TrimHistory { room: id, from });
            }
        }
        for change in trims {
            self.write_behind(change, out);
        }
    }
}

/// A requested page size: 0 or over [`MAX_PAGE`] means [`MAX_PAGE`] (§12).
fn page_size(limit: u64) -> usize {
    match usize::try_from(limit) {
        Ok(n @ 1..=MAX_PAGE) => n,
        _ => MAX_PAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(h: &mut History, sent: u64, size: usize) -> u64 {
        let m = Message {
            seq: 0,
            client: 1,
            user: 0,
            name: "a",
            sent,
            text: "x",
        };
        h.append(m, size)
    }

    #[test]
    fn keeps_the_newest_and_pages_backwards() {
        let mut h = History::new(7);
        for i in 0..10 {
            said(&mut h, i, 4);
        }
        fn seqs<'a>(page: impl Iterator<Item = Message<'a>>) -> Vec<u64> {
            page.map(|m| m.seq).collect()
        }
        assert_eq!(seqs(h.page(0, 100)), [7, 8, 9, 10]);
        assert_eq!(seqs(h.page(9, 2)), [7, 8]);
        assert_eq!(seqs(h.page(7, 2)), Vec::<u64>::new());
        assert!(matches!(h.since(7, 10), Ok(Since::Complete(r)) if r.is_empty()));
        assert!(matches!(h.since(7, 6), Ok(Since::Complete(r)) if r == (0..4)));
        assert!(matches!(h.since(7, 5), Ok(Since::Lost)));
        assert!(matches!(h.since(8, 10), Ok(Since::Lost)));
        assert_eq!(h.since(7, 11).err(), Some(ChatError::BadHistoryRange));
    }

    #[test]
    fn expires_by_age_and_trims_the_store_once() {
        let mut h = History::new(1);
        for i in 0..5 {
            said(&mut h, 100 + i, 10);
        }
        h.expire(103);
        assert_eq!(h.page(0, 100).count(), 2);
        assert_eq!(h.trim_due(), Some(4));
        assert_eq!(h.trim_due(), None);
        h.expire(1000);
        assert_eq!(h.trim_due(), Some(6));
        assert!(matches!(h.since(1, 5), Ok(Since::Complete(r)) if r.is_empty()));
        assert!(matches!(h.since(1, 4), Ok(Since::Lost)));
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0), MAX_PAGE);
        assert_eq!(page_size(1), 1);
        assert_eq!(page_size(1_000_000_000_000), MAX_PAGE);
    }

    #[test]
    fn epochs_are_nonzero_and_javascript_safe() {
        let mut e = Epochs::default();
        for _ in 0..1000 {
            let x = e.draw();
            assert!(x > 0 && x <= EPOCH_MASK);
        }
    }
}
