//! User accounts: names, passwords, and who is logged in as whom.
//!
//! Passwords are held here as [`Secret`]s and compared in constant time. Durable storage and a
//! slow hash come with the store; the methods here are the interface it will keep.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};

use super::conns::Identity;
use super::limits::Guesser;
use super::{Answer, Chat, ChatError, ConnId, Dialect, Event, Secret, Sink, UserInfo};

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
    password: Secret,
    /// Position in `Users::order`.
    seq: u64,
    /// The connections logged in as this user; empty means logged out.
    pub conns: BTreeSet<ConnId>,
}

#[derive(Default)]
pub(super) struct Users {
    by_id: HashMap<u64, User>,
    /// Userids by when they were added (a sequence number), for listings.
    order: BTreeMap<u64, u64>,
    by_name: HashMap<String, u64>,
    last_seq: u64,
    /// The highest userid ever used: `register` takes the next, so none is reused.
    highest_id: u64,
}

impl Users {
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

    /// `adduser`: the admin picks the userid.
    pub fn add(&mut self, id: u64, name: String, password: Secret) -> Result<(), ChatError> {
        if self.by_id.contains_key(&id) {
            return Err(ChatError::UseridInUse);
        }
        if self.by_name.contains_key(&name) {
            return Err(ChatError::NameTaken);
        }
        if id == 0 {
            return Err(ChatError::UseridZero);
        }
        self.insert(id, name, password);
        Ok(())
    }

    /// `register`: checks the name and password rules and takes the next userid.
    pub fn register(&mut self, name: String, password: Secret) -> Result<u64, ChatError> {
        check_name(&name)?;
        check_password(&password)?;
        if self.by_name.contains_key(&name) {
            return Err(ChatError::NameTaken);
        }
        let id = self.highest_id + 1;
        self.insert(id, name, password);
        Ok(id)
    }

    fn insert(&mut self, id: u64, name: String, password: Secret) {
        self.highest_id = self.highest_id.max(id);
        self.last_seq += 1;
        self.order.insert(self.last_seq, id);
        self.by_name.insert(name.clone(), id);
        let user = User {
            name,
            password,
            seq: self.last_seq,
            conns: BTreeSet::new(),
        };
        self.by_id.insert(id, user);
    }

    /// The userid whose name and password these are.
    pub fn verify(&self, name: &str, password: &Secret) -> Option<u64> {
        let id = self.id_of(name)?;
        self.by_id[&id].password.matches(password).then_some(id)
    }

    pub fn change_password(&mut self, id: u64, old: &Secret, new: Secret) -> Result<(), ChatError> {
        let user = self.by_id.get_mut(&id).ok_or(ChatError::NotRegistered)?;
        if !user.password.matches(old) {
            return Err(ChatError::IncorrectLogin);
        }
        check_password(&new)?;
        user.password = new;
        Ok(())
    }

    /// Checks `password` before an account is deleted.
    pub fn check_password_of(&self, id: u64, password: &Secret) -> Result<(), ChatError> {
        match self.by_id.get(&id) {
            Some(u) if u.password.matches(password) => Ok(()),
            _ => Err(ChatError::IncorrectLogin),
        }
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
    pub(super) fn login(
        &mut self,
        conn: ConnId,
        mid: u64,
        name: &str,
        password: &Secret,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let account = self.users.id_of(name);
        let user = self.guess_password(conn, account, now, |users| {
            users
                .verify(name, password)
                .ok_or(ChatError::IncorrectLogin)
        })?;
        self.switch_identity(conn, mid, Identity::User(user), out);
        Ok(self.logged_in(user))
    }

    /// Runs a password check of `account` (if the name is one) for `conn`, counting a wrong
    /// password against the connection's address and the account; either one locked out is
    /// refused without the check.
    fn guess_password<T>(
        &mut self,
        conn: ConnId,
        account: Option<u64>,
        now: u64,
        check: impl FnOnce(&mut Users) -> Result<T, ChatError>,
    ) -> Result<T, ChatError> {
        let who = self.guesser(conn);
        let acct = account.map(Guesser::Account);
        self.guard.check(who, now)?;
        if let Some(acct) = acct {
            self.guard.check(acct, now)?;
        }
        match check(&mut self.users) {
            Err(ChatError::IncorrectLogin) => {
                self.guard.failed(who, now, &self.limits);
                if let Some(acct) = acct {
                    self.guard.failed(acct, now, &self.limits);
                }
                Err(ChatError::IncorrectLogin)
            }
            Ok(v) => {
                if let Some(acct) = acct {
                    self.guard.succeeded(acct);
                }
                Ok(v)
            }
            Err(e) => Err(e),
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
        self.set_identity(conn, identity);
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
    fn logged_in(&mut self, user: u64) -> Answer<'_> {
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
        self.set_identity(conn, Identity::Anonymous);
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
    pub(super) fn set_identity(&mut self, conn: ConnId, identity: Identity) {
        let c = self.conns.get_mut(conn).expect("open");
        if c.identity == identity {
            return;
        }
        match std::mem::replace(&mut c.identity, identity.clone()) {
            Identity::User(old) => {
                if let Some(u) = self.users.get_mut(old) {
                    u.conns.remove(&conn);
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
                }
            }
            Identity::Nick(name) if c.dialect == Dialect::Json => {
                self.conns.guests.insert(name, conn);
            }
            Identity::Nick(_) | Identity::Anonymous => {}
        }
    }

    pub(super) fn register(
        &mut self,
        name: String,
        password: Secret,
    ) -> Result<Answer<'_>, ChatError> {
        let user = self.users.register(name, password)?;
        Ok(Answer::Registered { user })
    }

    pub(super) fn change_password(
        &mut self,
        conn: ConnId,
        old: &Secret,
        new: Secret,
        now: u64,
    ) -> Result<Answer<'_>, ChatError> {
        let c = self.conns.get(conn).expect("open");
        let user = match c.identity {
            Identity::User(user) => user,
            Identity::Nick(_) if c.dialect == Dialect::Json => {
                return Err(ChatError::NotRegistered);
            }
            _ => return Err(ChatError::NotLoggedIn),
        };
        self.guess_password(conn, Some(user), now, |users| {
            users.change_password(user, old, new)
        })?;
        Ok(Answer::Done)
    }

    /// Every connection of the user is logged out as by `logout(M,0)` and told; queued
    /// messages and snaps of the user go with it; the userid is never given out again.
    pub(super) fn delete_account(
        &mut self,
        conn: ConnId,
        mid: u64,
        password: &Secret,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let user = self
            .conns
            .get(conn)
            .and_then(|c| c.user())
            .ok_or(ChatError::NotLoggedIn)?;
        self.guess_password(conn, Some(user), now, |users| {
            users.check_password_of(user, password)
        })?;
        let conns: Vec<ConnId> = self
            .users
            .get(user)
            .map_or_else(Vec::new, |u| u.conns.iter().copied().collect());
        for c in conns {
            self.leave_all(c, mid, true, out);
            self.set_identity(c, Identity::Anonymous);
            self.tell_conns([c], mid, &Event::AccountDeleted { user }, out);
        }
        self.users.remove(user);
        self.snaps.remove_user(user);
        Ok(Answer::Done)
    }

    pub(super) fn find_users(&self, pattern: &str) -> Result<Answer<'_>, ChatError> {
        if pattern.len() > MAX_PATTERN {
            return Err(ChatError::BadName);
        }
        let (total, users) = self.users.find(pattern);
        Ok(Answer::Found { total, users })
    }

    pub(super) fn add_user(
        &mut self,
        conn: ConnId,
        id: u64,
        name: String,
        password: Secret,
        key: &Secret,
        now: u64,
    ) -> Result<Answer<'_>, ChatError> {
        self.check_server_password(conn, key, now)?;
        if name.len() > self.limits.name_len {
            return Err(ChatError::TooLong(super::Field::Name));
        }
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(ChatError::BadName);
        }
        self.users.add(id, name, password)?;
        Ok(Answer::Done)
    }

    pub(super) fn remove_user(
        &mut self,
        conn: ConnId,
        id: u64,
        key: &Secret,
        now: u64,
    ) -> Result<Answer<'_>, ChatError> {
        self.check_server_password(conn, key, now)?;
        let user = self.users.get(id).ok_or(ChatError::UserNotFound)?;
        if !user.conns.is_empty() {
            return Err(ChatError::UserLoggedIn);
        }
        self.users.remove(id);
        self.snaps.remove_user(id);
        Ok(Answer::Done)
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
