//! Messages to users who are offline (`docs/protocol.md` §10): queued durably, handed over at
//! the recipient's next login, dropped after their time to live.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::durable::{Change, StoredOffline};
use super::pending::{Then, Work};
use super::{Answer, Chat, ChatError, ConnId, ReplyTo, Sink};

#[derive(Default)]
pub(super) struct Offline {
    /// Per recipient, oldest first.
    queues: HashMap<u64, VecDeque<StoredOffline>>,
    /// (sent, id, recipient) of every queued message, to drop them when they get too old.
    by_age: BTreeSet<(u64, u64, u64)>,
    last_id: u64,
    pub ids: super::Ids,
}

impl Offline {
    pub fn next_id(&mut self) -> u64 {
        self.last_id = self.ids.after(self.last_id);
        self.last_id
    }

    /// After a restart: the highest id ever handed out.
    pub fn restore_last(&mut self, last: u64) {
        self.last_id = self.last_id.max(last);
    }

    /// Messages queued for `user`.
    pub fn len(&self, user: u64) -> usize {
        self.queues.get(&user).map_or(0, VecDeque::len)
    }

    /// Queues a message (committed, or loaded from the store).
    pub fn push(&mut self, message: StoredOffline) {
        self.last_id = self.last_id.max(message.id);
        self.by_age.insert((message.sent, message.id, message.to));
        self.queues
            .entry(message.to)
            .or_default()
            .push_back(message);
    }

    /// Takes every message queued for `user`, oldest first, except those older than `ttl`.
    pub fn take(&mut self, user: u64, now: u64, ttl: u64) -> Vec<StoredOffline> {
        let messages: Vec<StoredOffline> = self.queues.remove(&user).unwrap_or_default().into();
        for m in &messages {
            self.by_age.remove(&(m.sent, m.id, m.to));
        }
        messages
            .into_iter()
            .filter(|m| now < m.sent.saturating_add(ttl))
            .collect()
    }

    /// Puts messages back that could not be handed over, at the front of the queue.
    pub fn put_back(&mut self, messages: Vec<StoredOffline>) {
        for m in messages.into_iter().rev() {
            self.by_age.insert((m.sent, m.id, m.to));
            self.queues.entry(m.to).or_default().push_front(m);
        }
    }

    /// Drops the messages queued for a user who is gone.
    pub fn remove_for(&mut self, user: u64) {
        for m in self.queues.remove(&user).unwrap_or_default() {
            self.by_age.remove(&(m.sent, m.id, m.to));
        }
    }

    /// Drops the messages `ids` (handed over or expired on another node of a cluster).
    pub fn remove(&mut self, ids: &[u64]) {
        let gone: std::collections::HashSet<u64> = ids.iter().copied().collect();
        self.queues.retain(|_, queue| {
            queue.retain(|m| !gone.contains(&m.id));
            !queue.is_empty()
        });
        self.by_age.retain(|&(_, id, _)| !gone.contains(&id));
    }

    /// Drops messages sent before `cutoff`; returns their ids.
    pub fn expire(&mut self, cutoff: u64) -> Vec<u64> {
        let mut gone = Vec::new();
        while let Some(&(sent, id, to)) = self.by_age.first() {
            if sent >= cutoff {
                break;
            }
            self.by_age.pop_first();
            if let Some(queue) = self.queues.get_mut(&to) {
                queue.retain(|m| m.id != id);
                if queue.is_empty() {
                    self.queues.remove(&to);
                }
            }
            gone.push(id);
        }
        gone
    }
}

impl Chat {
    /// `sendto` a user who exists but has no connection: queued for their next login, once
    /// the store has it.
    pub(super) fn queue_offline(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        to: u64,
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let from = self
            .conns
            .get(conn)
            .and_then(|c| c.user())
            .ok_or(ChatError::NotLoggedIn)?;
        if self.offline.len(to) >= self.limits.offline_queue {
            return Err(ChatError::QueueFull);
        }
        let from_name = self
            .users
            .get(from)
            .map_or_else(String::new, |u| u.name.clone());
        let message = StoredOffline {
            id: self.offline.next_id(),
            to,
            from,
            from_name,
            sent: now,
            text: text.to_owned(),
        };
        let work = Work::Store(Change::PutOffline(message.clone()));
        self.park(conn, re, Then::Queued(message), work, out)
    }

    /// Queued messages past their time to live disappear, from memory and from the store.
    pub(super) fn expire_offline(&mut self, now: u64, out: &mut dyn Sink) {
        let ids = self
            .offline
            .expire(now.saturating_sub(self.limits.offline_ttl));
        if !ids.is_empty() {
            self.background(Then::Nothing, Change::DeleteOffline { ids }, out);
        }
    }
}
