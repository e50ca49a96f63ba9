//! The logic thread: applies events to the chat state and hands the results to the net thread.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mio::Waker;

use crate::chat::Chat;
use crate::events::{ToLogic, ToNet};

/// How often `Tick` drives time-based state (snap expiry).
const TICK: Duration = Duration::from_secs(1);

/// Most event batches applied before results are handed over and the net thread is woken:
/// enough to amortise the wake-up under load, few enough to keep latency low.
const MAX_BATCHES: usize = 16;

/// Runs until `Shutdown` arrives or the net thread goes away.
///
/// Waits on the event channel with a timeout instead of a second (ticker) channel: a
/// single-channel wait is much cheaper than a `select!`, which registers and unregisters with
/// both channels on every wake-up.
pub fn run(
    mut chat: Chat,
    events: Receiver<Vec<ToLogic>>,
    to_net: Sender<Vec<ToNet>>,
    waker: Arc<Waker>,
) {
    let mut next_tick = Instant::now() + TICK;
    loop {
        let first = match events.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = unix_now();
        let mut out = Vec::new();
        let mut stop = false;
        let batches = std::iter::once(first).chain(events.try_iter().take(MAX_BATCHES - 1));
        let mut sent = false;
        'batches: for batch in batches {
            for event in batch {
                match event {
                    ToLogic::Shutdown => {
                        stop = true;
                        break 'batches;
                    }
                    ToLogic::InjectPanic => panic!("injected panic (websocket test debug panic)"),
                    ToLogic::Forward(msg) => out.push(msg),
                    event => chat.handle(event, now, &mut out),
                }
            }
            // One output batch per input batch keeps output batches as small as the net
            // thread's turns, so its per-turn limit can pace them.
            if !out.is_empty() {
                sent = true;
                if to_net.send(std::mem::take(&mut out)).is_err() {
                    return;
                }
            }
        }
        if Instant::now() >= next_tick {
            chat.handle(ToLogic::Tick, now, &mut out);
            next_tick = Instant::now() + TICK;
        }
        if !out.is_empty() {
            sent = true;
            if to_net.send(out).is_err() {
                return;
            }
        }
        if sent && waker.wake().is_err() {
            return;
        }
        if stop {
            return;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
