//! Messages to people rather than rooms: private messages, broadcasts, invitations.

use super::conns::Identity;
use super::{
    Answer, Chat, ChatError, ConnId, Dialect, Event, ReplyTo, RoomRef, Secret, Sink, Target,
};

impl Chat {
    /// `sendto`: to every connection of a user, or to one connection by chatclientid.
    /// Room-URL connections speak only in their room, so they cannot be addressed.
    /// A user with no connection gets the message queued (§10).
    pub(super) fn send_to(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        to: Target,
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let targets: Vec<ConnId> = match to {
            Target::User(id) => {
                let user = self.users.get(id).ok_or(ChatError::UserNotFound)?;
                if user.conns.is_empty() {
                    return self.queue_offline(conn, re, id, text, now, out);
                }
                user.conns.iter().copied().collect()
            }
            Target::Client(client) => self
                .conns
                .by_client(client)
                .filter(|&c| {
                    self.conns
                        .get(c)
                        .is_some_and(|c| c.dialect != Dialect::RoomUrl)
                })
                .into_iter()
                .collect(),
        };
        if targets.is_empty() {
            return Err(ChatError::NotOnline);
        }
        if self.cluster_down() && targets.iter().any(|c| c.is_remote()) {
            return Err(ChatError::Busy);
        }
        let to_user = self
            .conns
            .get(targets[0])
            .and_then(|c| c.user())
            .unwrap_or(0);
        let event = Event::Private {
            from: self.who(conn),
            text,
        };
        self.tell_conns(targets, re.mid.unwrap_or(0), &event, out);
        self.users.count_message(self.who(conn).user, Some(to_user));
        out.emit(super::Effect::Notify(super::Notice::Private {
            from: self.who(conn),
            to_user,
            text,
        }));
        Ok(Answer::Done)
    }

    /// To every connection on the server; the server password is the key.
    pub(super) fn broadcast(
        &mut self,
        conn: ConnId,
        mid: u64,
        key: &Secret,
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        self.check_server_password(conn, key, now)?;
        let event = Event::Broadcast {
            from: self.who(conn),
            text,
        };
        self.tell_everyone(false, Some(conn), mid, &event, out);
        if self.cluster.is_some() {
            let event = super::Relayed::of(&event).expect("a broadcast relays");
            out.emit(super::Effect::Share(super::Shared::Relay {
                node: None,
                clients: Vec::new(),
                mid,
                event,
            }));
        }
        Ok(Answer::Done)
    }

    /// Tells every connection of `invitee` (a user or a guest) that the caller invites them
    /// into a room the caller is in.
    pub(super) fn invite(
        &self,
        conn: ConnId,
        room: &RoomRef,
        invitee: &str,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let room = self.resolve(room)?;
        let r = self.rooms.get(room).expect("resolved");
        if !r.members.contains(conn) {
            return Err(ChatError::NotAMember);
        }
        let mut targets: Vec<ConnId> = self
            .users
            .id_of(invitee)
            .and_then(|id| self.users.get(id))
            .map_or_else(Vec::new, |u| u.conns.iter().copied().collect());
        targets.extend(self.conns.guests.get(invitee).copied());
        debug_assert!(targets.iter().all(|&c| {
            self.conns
                .get(c)
                .is_some_and(|c| !matches!(c.identity, Identity::Anonymous))
        }));
        if targets.is_empty() {
            return Err(ChatError::NotOnline);
        }
        if self.cluster_down() && targets.iter().any(|c| c.is_remote()) {
            return Err(ChatError::Busy);
        }
        let event = Event::Invited {
            room: &r.name,
            by: self.who(conn),
        };
        self.tell_conns(targets, 0, &event, out);
        Ok(Answer::Done)
    }
}
