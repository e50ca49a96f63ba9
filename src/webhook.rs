//! Webhooks: each chat event an operator asked for is POSTed as JSON to their URLs.
//!
//! The logic thread turns the core's [`Notice`]s into one JSON body each and offers it to every
//! hook whose filter takes it, with `try_send` on that hook's bounded queue: a receiver that is
//! down or slow fills its queue, and what does not fit is dropped and counted. Chat never waits
//! for a receiver. Each hook has its own worker thread with a blocking HTTP client (`ureq`), a
//! timeout per attempt, and retries with a doubling backoff, so one slow receiver delays no
//! other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use log::{debug, warn};
use serde_json::{Value, json};

use crate::chat::{Notice, Who};

/// The first retry waits this long; each further one twice as long as the one before.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The names of the events a filter can choose, as they appear in payloads (`"event"`).
pub const EVENTS: [&str; 6] = [
    "login",
    "logout",
    "room_message",
    "private_message",
    "room_created",
    "room_deleted",
];

/// How a hook proves to its receiver that the server sent the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// Any header, e.g. `X-Hook-Secret: ...`.
    Header { name: String, value: String },
    /// `Cookie: <name=value>`.
    Cookie(String),
}

impl Auth {
    /// `basic:USER:PASSWORD`, `bearer:TOKEN`, `header:NAME:VALUE` or `cookie:NAME=VALUE`.
    pub fn parse(spec: &str) -> Result<Auth, String> {
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let two = |what: &str| {
            rest.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("webhook auth `{kind}` takes {what}"))
        };
        match kind {
            "basic" => two("USER:PASSWORD").map(|(user, password)| Auth::Basic { user, password }),
            "bearer" if !rest.is_empty() => Ok(Auth::Bearer(rest.to_string())),
            "header" => two("NAME:VALUE").map(|(name, value)| Auth::Header { name, value }),
            "cookie" if rest.contains('=') => Ok(Auth::Cookie(rest.to_string())),
            _ => Err(format!(
                "webhook auth is basic:USER:PASSWORD, bearer:TOKEN, header:NAME:VALUE or \
                 cookie:NAME=VALUE, not `{kind}:...`"
            )),
        }
    }

    /// The header this adds to every request.
    fn header(&self) -> (String, String) {
        match self {
            Auth::Basic { user, password } => (
                "authorization".into(),
                format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            ),
            Auth::Bearer(token) => ("authorization".into(), format!("Bearer {token}")),
            Auth::Header { name, value } => (name.clone(), value.clone()),
            Auth::Cookie(cookie) => ("cookie".into(), cookie.clone()),
        }
    }
}

/// One receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    pub auth: Option<Auth>,
    /// Names from [`EVENTS`] this hook receives; empty: all of them.
    pub events: Vec<String>,
    /// Time for one attempt (connect, send, answer).
    pub timeout: Duration,
    /// Attempts after the first one fails (an error, a timeout, or a status other than 2xx).
    pub retries: u32,
    /// Events waiting for this hook at most; more are dropped and counted.
    pub queue: usize,
}

/// What the hooks did, counted by whoever did it: `dropped` by the logic thread, the rest by
/// the workers. Atomics, read only by `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub dropped: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
}

/// One JSON body, shared by every hook it goes to.
type Body = Arc<[u8]>;

/// The logic thread's side: a bounded queue per hook, with the events it takes.
pub struct Webhooks {
    hooks: Vec<(Vec<String>, Sender<Body>)>,
    pub counters: Arc<Counters>,
}

impl Webhooks {
    /// Starts one worker thread per hook. The workers end when this is dropped (their queues
    /// close), after delivering what is queued.
    pub fn start(hooks: &[Hook]) -> std::io::Result<Webhooks> {
        let counters = Arc::new(Counters::default());
        let mut queues = Vec::new();
        for (i, hook) in hooks.iter().enumerate() {
            let (tx, rx) = bounded(hook.queue.max(1));
            let hook = hook.clone();
            let counters = counters.clone();
            thread::Builder::new()
                .name(format!("webhook-{i}"))
                .spawn(move || {
                    crate::crash::thread_started();
                    work(&hook, &rx, &counters);
                })?;
            queues.push((hooks[i].events.clone(), tx));
        }
        Ok(Webhooks {
            hooks: queues,
            counters,
        })
    }

    /// Offers the event to every hook that wants it; never blocks.
    pub fn notify(&self, notice: &Notice<'_>, now: u64) {
        let name = event_name(notice);
        let mut body: Option<Body> = None;
        for (events, queue) in &self.hooks {
            if !events.is_empty() && !events.iter().any(|e| e == name) {
                continue;
            }
            let body = body
                .get_or_insert_with(|| {
                    serde_json::to_vec(&payload(notice, now))
                        .expect("a JSON value serializes")
                        .into()
                })
                .clone();
            match queue.try_send(body) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if dropped.is_power_of_two() {
                        warn!("webhook queue full: {dropped} events dropped so far");
                    }
                }
            }
        }
    }
}

/// A hook's worker: posts each body until the queue closes.
fn work(hook: &Hook, queue: &Receiver<Body>, counters: &Counters) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(hook.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let auth = hook.auth.as_ref().map(Auth::header);
    for body in queue {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 0..=hook.retries {
            if attempt > 0 {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                // A worker's own pacing: it delays nobody but this hook's queue.
                thread::sleep(backoff);
                backoff *= 2;
            }
            let mut request = agent
                .post(&hook.url)
                .header("content-type", "application/json");
            if let Some((name, value)) = &auth {
                request = request.header(name.as_str(), value.as_str());
            }
            match request.send(&body[..]) {
                Ok(r) if r.status().is_success() => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(r) => debug!("webhook {}: status {}", hook.url, r.status()),
                Err(e) => debug!("webhook {}: {e}", hook.url),
            }
            if attempt == hook.retries {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                warn!(
                    "webhook {}: gave up on an event after {} attempts",
                    hook.url,
                    attempt + 1
                );
            }
        }
    }
}

fn event_name(notice: &Notice<'_>) -> &'static str {
    match notice {
        Notice::Login { .. } => EVENTS[0],
        Notice::Logout { .. } => EVENTS[1],
        Notice::RoomMessage { .. } => EVENTS[2],
        Notice::Private { .. } => EVENTS[3],
        Notice::RoomCreated { .. } => EVENTS[4],
        Notice::RoomDeleted { .. } => EVENTS[5],
    }
}

fn who(w: &Who<'_>) -> Value {
    json!({ "client": w.client, "user": w.user, "name": w.name })
}

/// The JSON body of one event: `{"event": ..., "time": unix seconds, ...fields}`.
fn payload(notice: &Notice<'_>, now: u64) -> Value {
    let mut v = match *notice {
        Notice::Login { user, name } | Notice::Logout { user, name } => {
            json!({ "user": user, "name": name })
        }
        Notice::RoomMessage {
            room,
            room_name,
            from,
            text,
        } => json!({ "room": room, "room_name": room_name, "from": who(&from), "text": text }),
        Notice::Private {
            from,
            to_user,
            text,
        } => {
            json!({ "from": who(&from), "to_user": to_user, "text": text })
        }
        Notice::RoomCreated { room, name } | Notice::RoomDeleted { room, name } => {
            json!({ "room": room, "name": name })
        }
    };
    v["event"] = event_name(notice).into();
    v["time"] = now.into();
    v
}

/// Standard base64 with padding (RFC 4648), for basic auth.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn auth_specs() {
        assert_eq!(
            Auth::parse("basic:u:p:q"),
            Ok(Auth::Basic {
                user: "u".into(),
                password: "p:q".into()
            })
        );
        assert_eq!(Auth::parse("bearer:t"), Ok(Auth::Bearer("t".into())));
        assert_eq!(
            Auth::parse("header:X-Secret:s"),
            Ok(Auth::Header {
                name: "X-Secret".into(),
                value: "s".into()
            })
        );
        assert_eq!(Auth::parse("cookie:a=b"), Ok(Auth::Cookie("a=b".into())));
        for bad in ["bearer:", "basic:u", "cookie:ab", "magic:x", ""] {
            assert!(Auth::parse(bad).is_err(), "{bad}");
        }
    }
}
