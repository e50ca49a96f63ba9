//! User accounts: names, passwords, and who is logged in as whom.
//!
//! Passwords exist only as argon2id hashes: checking or making one is work for the hashers, and
//! every change to an account is committed by the store before it is acknowledged, so these
//! commands park their connection (`pending.rs`) and finish in a continuation.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use super::conns::Identity;
use super::durable::{Change, HashJob, Hashed, StoredOffline, StoredUser};
use super::limits::Guesser;
use super::pending::{Step, Then, Work};
use super::{Answer, Chat, ChatError, ConnId, Dialect, Event, ReplyTo, Secret, Sink, UserInfo};

/// Usernames that `register` accepts: 1 to 64 bytes, no control byte below 0x20.
pub const NAME_LEN: std::ops::RangeInclusive<usize> = 1..=64;
/// Passwords that `register` and `changepassword` accept, in bytes.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=1024;
/// Most matches `findusers` lists (the total is still counted).
pub const MAX_FOUND: usize = 1000;
/// Longest `findusers` pattern, in bytes: longer than any name it could usefully match, and
/// short enough that matching it against every user stays cheap.
pub const MAX_PATTERN: usize = 256;

pub(super) struct User {
    pub name: String,
    /// The password as an argon2id PHC string; checked by the hashers, never here.
    pub hash: String,
    /// Position in `Users::order`.
    seq: u64,
    /// The connections logged in as this user; empty means logged out.
    pub conns: BTreeSet<ConnId>,
    /// Messages sent (to rooms and privately) and private messages received since the start,
    /// for the operator's API. Cells, because they are counted where a message is told,
    /// which only reads the state.
    pub sent: Cell<u64>,
    pub received: Cell<u64>,
}

#[derive(Default)]
pub(super) struct Users {
    by_id: HashMap<u64, User>,
    /// Userids by when they were added (a sequence number), for listings.
    order: BTreeMap<u64, u64>,
    by_name: HashMap<String, u64>,
    last_seq: u64,
    /// The highest userid ever handed out: `register` takes the next, so none is reused.
    highest_id: u64,
    pub ids: super::Ids,
    /// Names and ids of users being created (waiting for a hash or a commit), so two requests
    /// cannot both take them.
    reserved_names: HashSet<String>,
    reserved_ids: HashSet<u64>,
    /// Users created and waiting for their commit, by id.
    unborn: HashMap<u64, User>,
}

impl Users {
    /// Counts a message sent by `user` (0: not a user) and, privately, to `to`.
    pub fn count_message(&self, user: u64, to: Option<u64>) {
        if let Some(u) = self.by_id.get(&user) {
            u.sent.set(u.sent.get() + 1);
        }
        if let Some(u) = to.and_then(|to| self.by_id.get(&to)) {
            u.received.set(u.received.get() + 1);
        }
    }

    pub fn get(&self, id: u64) -> Option<&User> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut User> {
        self.by_id.get_mut(&id)
    }

    pub fn id_of(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// Users in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &User)> {
        self.order.values().map(|id| (*id, &self.by_id[id]))
    }

    /// Takes `name` for a user being created, or says it is taken.
    pub fn reserve_name(&mut self, name: &str) -> Result<(), ChatError> {
        if self.by_name.contains_key(name) || !self.reserved_names.insert(name.to_owned()) {
            return Err(ChatError::NameTaken);
        }
        Ok(())
    }

    /// Gives up a name reservation (the creation failed).
    pub fn release(&mut self, name: &str) {
        self.reserved_names.remove(name);
    }

    /// Gives up an id reservation (the creation failed).
    pub fn release_id(&mut self, id: u64) {
        self.reserved_ids.remove(&id);
    }

    /// `adduser`'s checks: the admin picks the userid.
    pub fn reserve(&mut self, id: u64, name: &str) -> Result<(), ChatError> {
        if self.by_id.contains_key(&id) || self.reserved_ids.contains(&id) {
            return Err(ChatError::UseridInUse);
        }
        if self.by_name.contains_key(name) || self.reserved_names.contains(name) {
            return Err(ChatError::NameTaken);
        }
        if id == 0 {
            return Err(ChatError::UseridZero);
        }
        self.reserved_ids.insert(id);
        self.reserved_names.insert(name.to_owned());
        Ok(())
    }

    /// Prepares a user for its commit: hands out its id (the next one unless given) and its
    /// place in the order. The user exists once [`Users::born`] is called after the commit.
    pub fn conceive(&mut self, id: Option<u64>, name: String, hash: String) -> StoredUser {
        let id = id.unwrap_or_else(|| self.ids.after(self.highest_id));
        self.highest_id = self.highest_id.max(id);
        // Seqs come from the same id space, so two nodes adding users at once cannot clash.
        self.last_seq = self.ids.after(self.last_seq);
        let user = User {
            name: name.clone(),
            hash: hash.clone(),
            seq: self.last_seq,
            conns: BTreeSet::new(),
            sent: Cell::new(0),
            received: Cell::new(0),
        };
        self.unborn.insert(id, user);
        StoredUser {
            id,
            seq: self.last_seq,
            name,
            hash,
        }
    }

    /// The user's commit is done (`stored`) or failed: it exists now, or never will.
    pub fn born(&mut self, id: u64, stored: bool) {
        let Some(user) = self.unborn.remove(&id) else {
            return;
        };
        self.reserved_ids.remove(&id);
        self.reserved_names.remove(&user.name);
        if stored {
            self.insert(id, user);
        }
    }

    fn insert(&mut self, id: u64, user: User) {
        self.highest_id = self.highest_id.max(id);
        self.last_seq = self.last_seq.max(user.seq);
        self.order.insert(user.seq, id);
        self.by_name.insert(user.name.clone(), id);
        self.by_id.insert(id, user);
    }

    /// A user loaded from the store.
    pub fn restore(&mut self, stored: StoredUser) {
        let user = User {
            name: stored.name,
            hash: stored.hash,
            seq: stored.seq,
            conns: BTreeSet::new(),
            sent: Cell::new(0),
            received: Cell::new(0),
        };
        self.insert(stored.id, user);
    }

    /// The highest userid ever handed out, from the store.
    pub fn restore_highest(&mut self, id: u64) {
        self.highest_id = self.highest_id.max(id);
    }

    /// Removes a user; the caller has logged out its connections. The userid stays used.
    pub fn remove(&mut self, id: u64) -> Option<User> {
        let user = self.by_id.remove(&id)?;
        self.order.remove(&user.seq);
        self.by_name.remove(&user.name);
        Some(user)
    }

    /// `findusers`: matches of `pattern` in the order users were added, at most [`MAX_FOUND`]
    /// of them, and the number of all matches.
    pub fn find(&self, pattern: &str) -> (u64, Vec<UserInfo<'_>>) {
        let pattern = if pattern.is_empty() { "*" } else { pattern };
        let mut total = 0;
        let mut found = Vec::new();
        for (id, user) in self.iter() {
            if wildcard_match(pattern, &user.name) {
                total += 1;
                if found.len() < MAX_FOUND {
                    found.push(UserInfo {
                        id,
                        name: &user.name,
                        online: !user.conns.is_empty(),
                    });
                }
            }
        }
        (total, found)
    }
}

impl Chat {
    /// `login`: the password is checked by a hasher. An unknown name costs the same work as a
    /// known one, so the reply's timing does not tell which names exist.
    pub(super) fn login(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        name: &str,
        password: Secret,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let account = self.users.id_of(name);
        self.before_guess(conn, account, now)?;
        let (user, job) = match account {
            Some(id) => {
                let hash = self.users.get(id).expect("indexed").hash.clone();
                (Some(id), HashJob::Verify { password, hash })
            }
            None if self.limits.login_backend => {
                let then = Then::BackendChecked {
                    name: name.to_string(),
                };
                let name = name.to_string();
                let work = Work::Hash(HashJob::Backend { name, password });
                return self.park(conn, re, then, work, out);
            }
            None => (None, HashJob::Decoy(password)),
        };
        let hash = match &job {
            HashJob::Verify { hash, .. } => hash.clone(),
            _ => String::new(),
        };
        self.park(
            conn,
            re,
            Then::LoginVerified { user, hash },
            Work::Hash(job),
            out,
        )
    }

    /// The password was checked; `user` is `None` when it was wrong (or the name unknown).
    pub(super) fn login_verified(
        &mut self,
        step: Step,
        account: Option<u64>,
        ok: bool,
        hash: &str,
        out: &mut dyn Sink,
    ) {
        self.guessed(step.conn, account, step.now, ok);
        // The account may have gone, or its password changed, while the hash was checked.
        let user = account
            .filter(|_| ok)
            .filter(|&u| self.users.get(u).is_some_and(|u| u.hash == hash));
        let (Some(user), Some(conn)) = (user, step.conn) else {
            return self.finish(step, Err(ChatError::IncorrectLogin), out);
        };
        let mid = step.replier.as_ref().map_or(0, |r| r.mid());
        self.switch_identity(conn, mid, Identity::User(user), out);
        let messages = self.offline.take(user, step.now, self.limits.offline_ttl);
        if messages.is_empty() {
            let answer = self.logged_in(user);
            super::pending::reply(&step, Ok(answer), out);
            return self.served(step, out);
        }
        // Handing the queued messages over is a change too: committed first, so a message is
        // neither lost nor delivered twice (§10).
        let ids = messages.iter().map(|m| m.id).collect();
        let work = Work::Store(Change::DeleteOffline { ids });
        self.repark(step, Then::LoginDelivered { user, messages }, work, out);
    }

    /// The login backend answered about `name`: an accepted name becomes a local account
    /// (committed first) under the backend's userid and is logged in; a refusal is a failed
    /// guess; no answer is "Server busy".
    pub(super) fn backend_checked(
        &mut self,
        step: Step,
        name: String,
        answer: Option<Hashed>,
        out: &mut dyn Sink,
    ) {
        match answer {
            Some(Hashed::Accepted { user, hash }) if self.users.reserve(user, &name).is_ok() => {
                let stored = self.users.conceive(Some(user), name, hash);
                let work = Work::Store(Change::PutUser(stored));
                self.repark(step, Then::BackendStored { user }, work, out);
            }
            Some(Hashed::Unavailable) => self.finish(step, Err(ChatError::Busy), out),
            _ => {
                // Refused, or accepted as a userid or name that is taken here meanwhile.
                self.guessed(step.conn, None, step.now, false);
                self.finish(step, Err(ChatError::IncorrectLogin), out);
            }
        }
    }

    /// The queued messages left the store (or could not): reply, then hand them over.
    pub(super) fn login_delivered(
        &mut self,
        step: Step,
        user: u64,
        messages: Vec<StoredOffline>,
        stored: bool,
        out: &mut dyn Sink,
    ) {
        let conn = step.conn;
        if !stored || conn.is_none() {
            // Not handed over: they stay queued for the next login.
            self.offline.put_back(messages.clone());
        }
        let answer = self.logged_in(user);
        super::pending::reply(&step, Ok(answer), out);
        if let (true, Some(conn)) = (stored, conn) {
            for m in &messages {
                let event = Event::Offline {
                    from: m.from,
                    from_name: &m.from_name,
                    sent: m.sent,
                    text: &m.text,
                };
                self.tell_conns([conn], 0, &event, out);
            }
        }
        self.served(step, out);
    }

    /// Before a password of `account` (if the name is one) is checked for `conn`: either one
    /// locked out by earlier failures is refused without the check.
    fn before_guess(
        &mut self,
        conn: ConnId,
        account: Option<u64>,
        now: u64,
    ) -> Result<(), ChatError> {
        self.guard.check(self.guesser(conn), now)?;
        if let Some(acct) = account {
            self.guard.check(Guesser::Account(acct), now)?;
        }
        Ok(())
    }

    /// After the check: a wrong password counts against the connection's address (while it is
    /// still connected) and the account; a right one clears the account's failures.
    pub(super) fn guessed(
        &mut self,
        conn: Option<ConnId>,
        account: Option<u64>,
        now: u64,
        ok: bool,
    ) {
        let acct = account.map(Guesser::Account);
        if ok {
            if let Some(acct) = acct {
                self.guard.succeeded(acct);
            }
            return;
        }
        if let Some(conn) = conn {
            let who = self.guesser(conn);
            self.guard.failed(who, now, &self.limits);
        }
        if let Some(acct) = acct {
            self.guard.failed(acct, now, &self.limits);
        }
    }

    /// A JSON guest: a name without an account, unique among users and guests.
    pub(super) fn guest_login(
        &mut self,
        conn: ConnId,
        mid: u64,
        name: String,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        check_name(&name)?;
        let taken_by_guest = self.conns.guests.get(&name).is_some_and(|&c| c != conn);
        if self.users.id_of(&name).is_some() || taken_by_guest {
            return Err(ChatError::NameTaken);
        }
        self.switch_identity(conn, mid, Identity::Nick(name), out);
        Ok(self.logged_in(0))
    }

    /// Makes `conn` someone else. A JSON connection logs out first (it leaves its rooms);
    /// a command-protocol connection stays in its rooms, whose members are told its new name.
    fn switch_identity(&mut self, conn: ConnId, mid: u64, identity: Identity, out: &mut dyn Sink) {
        let dialect = self.conns.get(conn).expect("open").dialect;
        if dialect == Dialect::Json {
            self.leave_all(conn, mid, true, out);
        }
        self.set_identity(conn, identity, out);
        let rooms: Vec<u64> = self
            .conns
            .get(conn)
            .expect("open")
            .rooms
            .iter()
            .copied()
            .collect();
        for room in rooms {
            self.announce_login(conn, room, mid, out);
        }
    }

    /// The answer to a login: a fresh session id, who is online and which rooms exist.
    pub(super) fn logged_in(&mut self, user: u64) -> Answer<'_> {
        self.last_session += 1;
        let session: String = (0..2)
            .map(|half| {
                let mut h = self.sessions.build_hasher();
                h.write_u64(self.last_session);
                h.write_u8(half);
                format!("{:016x}", h.finish())
            })
            .collect();
        let mut online: Vec<&str> = self
            .users
            .iter()
            .filter(|(_, u)| !u.conns.is_empty())
            .map(|(_, u)| u.name.as_str())
            .collect();
        let mut guests: Vec<(u64, &str)> = self
            .conns
            .guests
            .iter()
            .filter_map(|(name, &c)| Some((self.conns.get(c)?.client, name.as_str())))
            .collect();
        guests.sort_unstable();
        online.extend(guests.into_iter().map(|(_, name)| name));
        Answer::LoggedIn {
            user,
            session,
            online,
            rooms: self.rooms.iter().map(|(_, r)| r.name.as_str()).collect(),
        }
    }

    pub(super) fn logout(
        &mut self,
        conn: ConnId,
        mid: u64,
        disconnect: bool,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        if !disconnect && self.login_name(conn).is_none() {
            return Err(ChatError::AlreadyLoggedOut);
        }
        self.leave_all(conn, mid, true, out);
        self.set_identity(conn, Identity::Anonymous, out);
        if disconnect {
            out.emit(super::Effect::Close {
                conn,
                why: super::Farewell::LoggedOut,
            });
            Ok(Answer::Silent)
        } else {
            Ok(Answer::Done)
        }
    }

    /// Makes `conn` logged in as `identity` (or as nobody), keeping the user and guest indexes
    /// in step. Snap delivery is per login, so it is switched off when the identity changes.
    /// Logins and logouts of users are noticed ([`super::Notice`]).
    pub(super) fn set_identity(&mut self, conn: ConnId, identity: Identity, out: &mut dyn Sink) {
        let c = self.conns.get_mut(conn).expect("open");
        if c.identity == identity {
            return;
        }
        match std::mem::replace(&mut c.identity, identity.clone()) {
            Identity::User(old) => {
                if let Some(u) = self.users.get_mut(old) {
                    u.conns.remove(&conn);
                    // Each node tells its webhooks of its own connections only.
                    if !conn.is_remote() {
                        out.emit(super::Effect::Notify(super::Notice::Logout {
                            user: old,
                            name: &u.name,
                        }));
                    }
                }
            }
            Identity::Nick(old) if c.dialect == Dialect::Json => {
                self.conns.guests.remove(&old);
            }
            Identity::Nick(_) | Identity::Anonymous => {}
        }
        let c = self.conns.get_mut(conn).expect("open");
        c.snaps_enabled = false;
        match identity {
            Identity::User(new) => {
                if let Some(u) = self.users.get_mut(new) {
                    u.conns.insert(conn);
                    if !conn.is_remote() {
                        out.emit(super::Effect::Notify(super::Notice::Login {
                            user: new,
                            name: &u.name,
                        }));
                    }
                }
            }
            Identity::Nick(name) if c.dialect == Dialect::Json => {
                self.conns.guests.insert(name, conn);
            }
            Identity::Nick(_) | Identity::Anonymous => {}
        }
        self.share_presence(conn, out);
    }

    /// `register`: the name and password rules, then a hash, then a commit.
    pub(super) fn register(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        name: String,
        password: Secret,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        check_name(&name)?;
        check_password(&password)?;
        self.users.reserve_name(&name)?;
        let work = Work::Hash(HashJob::Hash(password));
        let parked = self.park(
            conn,
            re,
            Then::RegisterHashed { name: name.clone() },
            work,
            out,
        );
        if parked.is_err() {
            self.users.release(&name);
        }
        parked
    }

    pub(super) fn register_hashed(
        &mut self,
        step: Step,
        name: String,
        hash: String,
        out: &mut dyn Sink,
    ) {
        let stored = self.users.conceive(None, name, hash);
        let user = stored.id;
        let work = Work::Store(Change::PutUser(stored));
        self.repark(step, Then::RegisterStored { user }, work, out);
    }

    /// A new user's commit is done, or failed.
    pub(super) fn user_stored(&mut self, user: u64, stored: bool) -> Result<(), ChatError> {
        self.users.born(user, stored);
        if stored {
            Ok(())
        } else {
            Err(self.store_failed())
        }
    }

    /// `changepassword`: the old password is checked, then the new one hashed and committed.
    pub(super) fn change_password(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        old: Secret,
        new: Secret,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let c = self.conns.get(conn).expect("open");
        let user = match c.identity {
            Identity::User(user) => user,
            Identity::Nick(_) if c.dialect == Dialect::Json => {
                return Err(ChatError::NotRegistered);
            }
            _ => return Err(ChatError::NotLoggedIn),
        };
        let (hash, work) = self.check_own_password(conn, user, old, now)?;
        self.park(
            conn,
            re,
            Then::ChangeVerified { user, hash, new },
            work,
            out,
        )
    }

    pub(super) fn change_verified(
        &mut self,
        step: Step,
        user: u64,
        ok: bool,
        new: Secret,
        out: &mut dyn Sink,
    ) {
        if !ok {
            return self.finish(step, Err(ChatError::IncorrectLogin), out);
        }
        if let Err(e) = check_password(&new) {
            return self.finish(step, Err(e), out);
        }
        self.repark(
            step,
            Then::ChangeHashed { user },
            Work::Hash(HashJob::Hash(new)),
            out,
        );
    }

    /// `deleteaccount`: the password is checked, the deletion committed, then every connection
    /// of the user is logged out as by `logout(M,0)` and told.
    pub(super) fn delete_account(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        password: Secret,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let user = self
            .conns
            .get(conn)
            .and_then(|c| c.user())
            .ok_or(ChatError::NotLoggedIn)?;
        let (hash, work) = self.check_own_password(conn, user, password, now)?;
        self.park(conn, re, Then::DeleteVerified { user, hash }, work, out)
    }

    /// The hasher's work to check `password` against `user`'s own (a guess, refused unchecked
    /// during a lockout), and the hash it is checked against, which the continuation compares
    /// with the user's hash then (a change meanwhile fails the check).
    fn check_own_password(
        &mut self,
        conn: ConnId,
        user: u64,
        password: Secret,
        now: u64,
    ) -> Result<(String, Work), ChatError> {
        self.before_guess(conn, Some(user), now)?;
        let hash = self
            .users
            .get(user)
            .map(|u| u.hash.clone())
            .unwrap_or_default();
        let work = Work::Hash(HashJob::Verify {
            password,
            hash: hash.clone(),
        });
        Ok((hash, work))
    }

    /// A user's deletion is committed: its connections are logged out and told; messages
    /// queued for it and snaps to or from it go too; the userid is never given out again.
    pub(super) fn user_deleted(&mut self, user: u64, mid: u64, out: &mut dyn Sink) {
        let conns: Vec<ConnId> = self
            .users
            .get(user)
            .map_or_else(Vec::new, |u| u.conns.iter().copied().collect());
        for c in conns {
            self.leave_all(c, mid, true, out);
            self.set_identity(c, Identity::Anonymous, out);
            self.tell_conns([c], mid, &Event::AccountDeleted { user }, out);
        }
        self.users.remove(user);
        self.snaps.remove_user(user);
        self.offline.remove_for(user);
    }

    pub(super) fn find_users(&self, pattern: &str) -> Result<Answer<'_>, ChatError> {
        if pattern.len() > MAX_PATTERN {
            return Err(ChatError::BadName);
        }
        let (total, users) = self.users.find(pattern);
        Ok(Answer::Found { total, users })
    }

    /// `adduser`: the admin picks the userid; the password is hashed like everyone's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_user(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        id: u64,
        name: String,
        password: Secret,
        key: &Secret,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        self.check_server_password(conn, key, now)?;
        if name.len() > self.limits.name_len {
            return Err(ChatError::TooLong(super::Field::Name));
        }
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(ChatError::BadName);
        }
        self.users.reserve(id, &name)?;
        let work = Work::Hash(HashJob::Hash(password));
        let then = Then::AddUserHashed {
            id,
            name: name.clone(),
        };
        let parked = self.park(conn, re, then, work, out);
        if parked.is_err() {
            self.users.release(&name);
            self.users.release_id(id);
        }
        parked
    }

    pub(super) fn add_user_hashed(
        &mut self,
        step: Step,
        id: u64,
        name: String,
        hash: String,
        out: &mut dyn Sink,
    ) {
        let stored = self.users.conceive(Some(id), name, hash);
        let work = Work::Store(Change::PutUser(stored));
        self.repark(step, Then::AddUserStored { user: id }, work, out);
    }

    /// `removeuser`: refused while the user is logged in; committed, then gone.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn remove_user(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        id: u64,
        key: &Secret,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        self.check_server_password(conn, key, now)?;
        let user = self.users.get(id).ok_or(ChatError::UserNotFound)?;
        if !user.conns.is_empty() {
            return Err(ChatError::UserLoggedIn);
        }
        let work = Work::Store(Change::DeleteUser { id });
        self.park(conn, re, Then::UserDeleted { user: id }, work, out)
    }

    pub(super) fn list_users(
        &mut self,
        conn: ConnId,
        status: u64,
        key: &Secret,
        now: u64,
    ) -> Result<Answer<'_>, ChatError> {
        self.check_server_password(conn, key, now)?;
        let want_online = match status {
            1 => Some(true),
            2 => Some(false),
            3 => None,
            _ => return Err(ChatError::InvalidStatus),
        };
        let users = self.users.iter().map(|(id, u)| UserInfo {
            id,
            name: &u.name,
            online: !u.conns.is_empty(),
        });
        let users = users.filter(|u| want_online.is_none_or(|w| u.online == w));
        Ok(Answer::Users(users.collect()))
    }
}

fn check_name(name: &str) -> Result<(), ChatError> {
    if NAME_LEN.contains(&name.len()) && !name.bytes().any(|b| b < 0x20) {
        Ok(())
    } else {
        Err(ChatError::BadName)
    }
}

fn check_password(password: &Secret) -> Result<(), ChatError> {
    if PASSWORD_LEN.contains(&password.len()) {
        Ok(())
    } else {
        Err(ChatError::BadPassword)
    }
}

/// `*` matches any run of characters, `?` exactly one character, anything else itself, ASCII
/// letters in either case.
///
/// Greedy matching with one backtrack point (the last `*`): linear in practice and at worst
/// O(pattern × name), so a hostile pattern such as `*a*a*a*a*b` stays cheap on 64-byte names.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < name.len() {
        match pattern.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c.eq_ignore_ascii_case(&name[ni]) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards_fold_ascii_case_and_count_characters() {
        let m = wildcard_match;
        assert!(m("*", "alice"));
        assert!(m("a*", "Alice"));
        assert!(m("AL?CE", "alice"));
        assert!(m("*ce", "alice"));
        assert!(m("a*c*e", "abcde"));
        assert!(!m("a?", "a"));
        assert!(!m("b*", "alice"));
        assert!(m("?", "é"), "? is one character, not one byte");
        assert!(!m("É", "é"), "only ASCII letters fold");
        assert!(m("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }
}
