//! The logic thread: applies events to the chat state and hands the results to the net thread.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, select, tick};
use mio::Waker;

use crate::chat::Chat;
use crate::events::{ToLogic, ToNet};

/// Most events applied before results are handed over and the net thread is woken: large
/// enough to amortise the wake-up, small enough to keep latency low under a flood.
const BATCH: usize = 256;

/// Runs until `Shutdown` arrives or the net thread goes away.
pub fn run(mut chat: Chat, events: Receiver<ToLogic>, to_net: Sender<ToNet>, waker: Arc<Waker>) {
    let ticker = tick(Duration::from_secs(1));
    let mut out = Vec::new();
    loop {
        let first = select! {
            recv(events) -> ev => match ev {
                Ok(ev) => ev,
                Err(_) => return,
            },
            recv(ticker) -> _ => ToLogic::Tick,
        };
        let now = unix_now();
        let mut stop = false;
        for event in std::iter::once(first).chain(events.try_iter().take(BATCH - 1)) {
            match event {
                ToLogic::Shutdown => {
                    stop = true;
                    break;
                }
                ToLogic::InjectPanic => panic!("injected panic (websocket test debug panic)"),
                ToLogic::Forward(msg) => out.push(msg),
                event => chat.handle(event, now, &mut out),
            }
        }
        if !out.is_empty() {
            for msg in out.drain(..) {
                if to_net.send(msg).is_err() {
                    return;
                }
            }
            if waker.wake().is_err() {
                return;
            }
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
