//! Quotas and brute-force protection: how much one client may make the server hold, and how
//! often it may guess a secret. The numbers come from the configuration (`Limits`); this module
//! only counts and decides.

use std::collections::HashMap;

use super::{ChatError, ConnId};

/// Where a connection comes from, as an opaque key: the net thread maps an IPv4 address, or
/// the /64 of an IPv6 address, to a number. Failed guesses are always counted per address
/// (none, for a connection of unknown origin such as in tests: per connection). Quotas
/// count per address only when `quotas` is set: loopback clients are exempt unless
/// configured otherwise, because behind a local reverse proxy every client would share one
/// address (they are still limited per connection and per user).
///
/// Both threads keep one per connection, so it is kept small: the key is stored as bytes
/// because a `u128` field is aligned to 16 bytes, which would make this 32 bytes (48 with an
/// `Option`) and pad every struct holding it to a multiple of 16; this way it takes 18.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Peer {
    addr: [u8; 16],
    known: bool,
    quotas: bool,
}

impl Peer {
    /// A peer both quotas and guess counting apply to.
    pub fn at(addr: u128) -> Peer {
        Peer::new(addr, true)
    }

    /// A peer at `addr`; per-address quotas apply to it if `quotas`.
    pub fn new(addr: u128, quotas: bool) -> Peer {
        Peer {
            addr: addr.to_ne_bytes(),
            known: true,
            quotas,
        }
    }

    /// The address key, if the origin is known.
    pub fn addr(&self) -> Option<u128> {
        self.known.then(|| u128::from_ne_bytes(self.addr))
    }

    /// The key per-address quotas count under, if they apply.
    pub fn quota_key(&self) -> Option<u128> {
        self.addr().filter(|_| self.quotas)
    }
}

/// The quotas the core enforces. Every field is a `Config` field and a flag; see `config.rs`
/// for what each costs and protects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Rooms in existence, all owners together. Default 4096: bounds the room list (about
    /// 600 KB at 128-byte names, under the 1 MiB outbound cap) and a mass deletion (about
    /// 120 KB of notices per client).
    pub rooms: usize,
    /// Temporary rooms one connection, and one user, may have created and still exist.
    /// Default 16. Rooms made with the server password are exempt.
    pub rooms_per_owner: usize,
    /// Temporary rooms created from one address that still exist. Default 64.
    pub rooms_per_address: usize,
    /// Members one room may hold. Default 10,000 (each message is copied to each member).
    pub members: usize,
    /// Longest room name and `adduser` username, in bytes. Default 128.
    pub name_len: usize,
    /// Longest room question, and room answer, in bytes. Default 1 KiB.
    pub question_len: usize,
    /// Live snaps one user may have sent. Default 64 (≤ 4 MiB of 64 KiB messages).
    pub snaps_per_sender: usize,
    /// Live snaps waiting for one user. Default 256.
    pub snaps_per_recipient: usize,
    /// Live snaps sent from one address. Default 256.
    pub snaps_per_address: usize,
    /// Longest snap life (and read time), in seconds; a snap sent with no expiry lives this
    /// long. Default 7 days.
    pub snap_lifetime: u64,
    /// Failed guesses (server password, room answer, login) an address or account may make
    /// before each further failure locks it out for a while. Default 5.
    pub free_failures: u32,
    /// Longest lockout after a failed guess, in seconds (lockouts double from 1 s up to it).
    /// Default 60: past the free failures, about one guess a minute per address and account.
    pub max_lockout: u64,
    /// Password hashes waiting or running at most. Default 256; past it a login or a
    /// registration gets "Server busy; try again." at once instead of queueing without bound.
    pub hash_queue: usize,
    /// Messages queued for one offline user at most (§10). Default 1,000.
    pub offline_queue: usize,
    /// Seconds a queued message waits before it is dropped (§10). Default 7 days.
    pub offline_ttl: u64,
    /// A login for a name this server does not know asks the login backend (`--auth-url`)
    /// instead of failing. Default off.
    pub login_backend: bool,
    /// Messages a room keeps (§12); 0 keeps none. Default 1,000: with 100-byte messages
    /// about 200 KB per room in memory (see README for the measured cost).
    pub history_size: usize,
    /// Seconds a room keeps a message (§12). Default 7 days.
    pub history_ttl: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rooms: 4096,
            rooms_per_owner: 16,
            rooms_per_address: 64,
            members: 10_000,
            hash_queue: 256,
            offline_queue: 1000,
            offline_ttl: 7 * 24 * 3600,
            history_size: 1000,
            history_ttl: 7 * 24 * 3600,
            name_len: 128,
            question_len: 1024,
            snaps_per_sender: 64,
            snaps_per_recipient: 256,
            snaps_per_address: 256,
            snap_lifetime: 7 * 24 * 3600,
            free_failures: 5,
            max_lockout: 60,
            login_backend: false,
        }
    }
}

/// Which quota a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// The requester (its connection, user or address) has created enough rooms.
    RoomsPerOwner,
    /// The server holds as many rooms as it may.
    Rooms,
    /// The room is full.
    Members,
    /// The sender (user or address) has enough snaps waiting.
    SnapsPerSender,
    /// The recipient has enough snaps waiting.
    SnapsPerRecipient,
    /// A snap's expiry or read time is longer than the server keeps snaps.
    SnapLifetime,
}

/// Which field was too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Question,
    Answer,
}

/// Counts of things per owner, for quotas: one map entry per owner that has any.
pub(super) struct Counts<K>(HashMap<K, usize>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts(HashMap::new())
    }
}

impl<K: std::hash::Hash + Eq> Counts<K> {
    pub fn get(&self, key: &K) -> usize {
        self.0.get(key).copied().unwrap_or(0)
    }

    pub fn add(&mut self, key: K) {
        *self.0.entry(key).or_default() += 1;
    }

    pub fn sub(&mut self, key: K) {
        if let Some(n) = self.0.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&key);
            }
        }
    }
}

/// Whose guesses are counted: an address, a connection (when its address is exempt), or an
/// account (logins, whichever address they come from).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Guesser {
    Address(u128),
    Conn(ConnId),
    Account(u64),
}

impl Guesser {
    pub fn of(peer: Peer, conn: ConnId) -> Guesser {
        match peer.addr() {
            Some(addr) => Guesser::Address(addr),
            None => Guesser::Conn(conn),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: u64,
    locked_until: u64,
}

/// Failures are forgotten this long (seconds) after the last one.
const FORGET_AFTER: u64 = 15 * 60;

/// Failed guesses per guesser, with lockouts. Never sleeps: a locked-out guesser is refused
/// with [`ChatError::TryLater`] without its guess being checked, so even a right guess made
/// during a lockout learns nothing.
#[derive(Default)]
pub(super) struct Guard {
    failures: HashMap<Guesser, Failures>,
    /// Failed guesses ever, and guesses refused during a lockout (logged at shutdown).
    pub failed: u64,
    pub refused: u64,
}

impl Guard {
    /// Refuses a guesser that is locked out at `now`.
    pub fn check(&mut self, who: Guesser, now: u64) -> Result<(), ChatError> {
        match self.failures.get(&who) {
            Some(f) if f.locked_until > now => {
                self.refused += 1;
                Err(ChatError::TryLater {
                    secs: f.locked_until - now,
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed guess; past `free` failures each locks the guesser out for 1, 2, 4, …
    /// up to `max_lockout` seconds. Returns the failure count.
    pub fn failed(&mut self, who: Guesser, now: u64, limits: &Limits) -> u32 {
        self.failed += 1;
        let f = self.failures.entry(who).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: 0,
        });
        if now.saturating_sub(f.last) > FORGET_AFTER {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count > limits.free_failures {
            let over = (f.count - limits.free_failures - 1).min(32);
            let lockout = (1u64 << over).min(limits.max_lockout.max(1));
            f.locked_until = now.saturating_add(lockout);
            if over == 0 || (lockout == limits.max_lockout && f.count.is_multiple_of(100)) {
                log::warn!("{who:?}: {} failed guesses; locked out", f.count);
            }
        }
        f.count
    }

    /// A right guess clears an account's failures (never an address's: an attacker could
    /// clear its own by guessing something it knows).
    pub fn succeeded(&mut self, who: Guesser) {
        if matches!(who, Guesser::Account(_)) {
            self.failures.remove(&who);
        }
    }

    /// Forgets guessers idle for long, and connections that closed.
    pub fn prune(&mut self, now: u64) {
        self.failures
            .retain(|_, f| f.locked_until > now || now.saturating_sub(f.last) <= FORGET_AFTER);
    }

    pub fn forget_conn(&mut self, conn: ConnId) {
        self.failures.remove(&Guesser::Conn(conn));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_after_the_free_failures() {
        let limits = Limits::default();
        let mut g = Guard::default();
        let who = Guesser::Address(1);
        let t = 1000;
        for _ in 0..5 {
            assert!(g.check(who, t).is_ok());
            g.failed(who, t, &limits);
        }
        assert!(g.check(who, t).is_ok(), "five failures are free");
        g.failed(who, t, &limits);
        assert_eq!(g.check(who, t), Err(ChatError::TryLater { secs: 1 }));
        assert!(g.check(who, t + 1).is_ok());
        g.failed(who, t + 1, &limits);
        assert_eq!(g.check(who, t + 1), Err(ChatError::TryLater { secs: 2 }));
        for i in 0..20 {
            g.failed(who, t + 10 + i, &limits);
        }
        assert_eq!(g.check(who, t + 29), Err(ChatError::TryLater { secs: 60 }));
        // Another guesser is not affected; a quiet one is forgotten.
        assert!(g.check(Guesser::Address(2), t).is_ok());
        g.prune(t + 29 + 60 + FORGET_AFTER + 1);
        assert!(g.failures.is_empty());
    }
}
