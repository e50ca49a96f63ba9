//! Password hashing: argon2id with PHC strings, on a small pool of worker threads.
//!
//! Hashing is deliberately slow (tens of milliseconds and megabytes of memory per password), so
//! it never runs on the logic thread: the core hands out [`HashJob`]s and gets [`Hashed`]
//! answers back through its inbox, like every other message.

use std::thread::{self, JoinHandle};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use crossbeam_channel::{Receiver, Sender};

use crate::chat::{HashJob, Hashed, Secret};
use crate::events::ToLogic;

/// The argon2id cost of new hashes (checks use the cost each stored hash was made with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over that memory.
    pub iterations: u32,
    /// Lanes (threads within one hash; the pool already runs hashes side by side).
    pub parallelism: u32,
}

impl Cost {
    /// OWASP's first recommendation for argon2id: 19 MiB, 2 passes, 1 lane (about 20–40 ms per
    /// hash on one core of the reference machine).
    pub const DEFAULT: Cost = Cost {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// The cheapest cost argon2 accepts, for tests that hash many passwords. Never for real
    /// passwords.
    pub const TESTING: Cost = Cost {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
}

/// Does the work of one [`HashJob`].
#[derive(Clone)]
pub struct Hasher {
    argon2: Argon2<'static>,
    /// A hash of nothing in particular, made at start, for decoy checks.
    decoy: String,
    /// The login backend (`--auth-url`), if any.
    backend: Option<Backend>,
}

/// Where logins for unknown names are checked: a blocking HTTP client with a timeout, used
/// only on the hasher threads.
#[derive(Clone)]
struct Backend {
    url: String,
    agent: ureq::Agent,
}

impl Hasher {
    pub fn new(cost: Cost) -> Result<Hasher, String> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| format!("argon2 cost {cost:?}: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = Hasher {
            argon2,
            decoy: String::new(),
            backend: None,
        };
        hasher.decoy = hasher.hash(b"decoy").ok_or("argon2 cannot hash")?;
        Ok(hasher)
    }

    /// Checks logins for unknown names at `url` (`--auth-url`): a POST of
    /// `{"username":..,"password":..}` answered 200 with `{"userid":N}` accepts.
    pub fn with_backend(mut self, url: String, timeout: Duration) -> Hasher {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        self.backend = Some(Backend { url, agent });
        self
    }

    pub fn run(&self, job: HashJob) -> Hashed {
        match job {
            HashJob::Hash(password) => match self.hash(password.expose()) {
                Some(hash) => Hashed::Hash(hash),
                None => Hashed::Failed,
            },
            HashJob::Verify { password, hash } => match PasswordHash::new(&hash) {
                Ok(parsed) => Hashed::Verified(
                    self.argon2
                        .verify_password(password.expose(), &parsed)
                        .is_ok(),
                ),
                Err(_) => Hashed::Failed,
            },
            HashJob::Decoy(password) => {
                let parsed = PasswordHash::new(&self.decoy).expect("made by us");
                let _ = self.argon2.verify_password(password.expose(), &parsed);
                Hashed::Verified(false)
            }
            HashJob::Backend { name, password } => match &self.backend {
                None => Hashed::Verified(false),
                Some(backend) => match backend.check(&name, &password) {
                    Err(()) => Hashed::Unavailable,
                    Ok(None) => Hashed::Verified(false),
                    Ok(Some(user)) => match self.hash(password.expose()) {
                        Some(hash) => Hashed::Accepted { user, hash },
                        None => Hashed::Failed,
                    },
                },
            },
        }
    }

    fn hash(&self, password: &[u8]) -> Option<String> {
        let salt = SaltString::encode_b64(&random_salt()?).ok()?;
        let hash = self.argon2.hash_password(password, &salt).ok()?;
        Some(hash.to_string())
    }
}

impl Backend {
    /// `Ok(Some(userid))` if the backend accepts, `Ok(None)` if it refuses (any answer but a
    /// 200 with a positive `userid`), `Err` if it does not answer in time or cannot be reached.
    fn check(&self, name: &str, password: &Secret) -> Result<Option<u64>, ()> {
        let Ok(password) = std::str::from_utf8(password.expose()) else {
            return Ok(None);
        };
        let body = serde_json::json!({ "username": name, "password": password }).to_string();
        let mut response = match self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body.as_bytes())
        {
            Ok(r) => r,
            Err(e) => {
                log::warn!("login backend {}: {e}", self.url);
                return Err(());
            }
        };
        if response.status() != 200 {
            return Ok(None);
        }
        let text = match response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
        {
            Ok(text) => text,
            Err(ureq::Error::Timeout(_)) => return Err(()),
            Err(_) => return Ok(None),
        };
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Ok(answer["userid"].as_u64().filter(|&id| id > 0))
    }
}

/// 16 bytes from the kernel's random number generator.
fn random_salt() -> Option<[u8; 16]> {
    let mut salt = [0u8; 16];
    // SAFETY: getrandom writes at most `salt.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
    (n == salt.len() as isize).then_some(salt)
}

/// A job for the pool, answered to the logic thread under its ticket.
pub type Request = (u64, HashJob);

/// How much lower the hashing threads' scheduling priority is than the rest (a nice value):
/// on a machine with few cores a login storm must not take the CPU from the net and logic
/// threads, so chat stays fast while the logins wait a little longer.
const HASH_NICENESS: libc::c_int = 10;

/// Starts `workers` hashing threads taking jobs from `jobs`; each answer goes to the logic
/// thread's inbox. The threads end when `jobs` is closed.
pub fn spawn_pool(
    workers: usize,
    hasher: Hasher,
    jobs: Receiver<Request>,
    to_logic: Sender<Vec<ToLogic>>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..workers.max(1))
        .map(|i| {
            let (hasher, jobs, to_logic) = (hasher.clone(), jobs.clone(), to_logic.clone());
            thread::Builder::new()
                .name(format!("hash-{i}"))
                .spawn(move || {
                    crate::crash::thread_started();
                    // SAFETY: setpriority on this thread's own id; no memory is involved. A
                    // failure (not permitted) leaves the default priority, which only costs
                    // chat latency under a login storm.
                    unsafe {
                        let tid = libc::gettid();
                        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HASH_NICENESS);
                    }
                    for (ticket, job) in jobs {
                        let result = hasher.run(job);
                        if to_logic
                            .send(vec![ToLogic::Hashed { ticket, result }])
                            .is_err()
                        {
                            return;
                        }
                    }
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_decoys_fail() {
        let h = Hasher::new(Cost::TESTING).unwrap();
        let Hashed::Hash(hash) = h.run(HashJob::Hash(Secret::new(*b"password"))) else {
            panic!("no hash");
        };
        assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
        let verify = |p: &[u8]| {
            h.run(HashJob::Verify {
                password: Secret::new(p),
                hash: hash.clone(),
            })
        };
        assert_eq!(verify(b"password"), Hashed::Verified(true));
        assert_eq!(verify(b"passwore"), Hashed::Verified(false));
        assert_eq!(
            h.run(HashJob::Decoy(Secret::new(*b"x"))),
            Hashed::Verified(false)
        );
        let broken = HashJob::Verify {
            password: Secret::new(*b"x"),
            hash: "not a hash".into(),
        };
        assert_eq!(h.run(broken), Hashed::Failed);
    }
}
