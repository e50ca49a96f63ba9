//! How output of the logic thread reaches the net thread: through the channel, and a wake-up
//! of the net thread's poller only when the net thread is not already waiting on the channel.
//!
//! On one CPU the net thread hands a turn's events over and waits on the channel for the
//! answer (see `Net::run`); the channel itself wakes it then, so waking the poller as well
//! would cost the logic thread a syscall and the net thread an empty turn per message.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::Receiver;
use mio::Waker;

/// Shared by the two threads.
///
/// `waiting` is set by the net thread from before it hands events over until its wait on the
/// channel ends (from before, because the woken logic thread often runs at once, ahead of
/// the net thread's wait, and can answer before the net thread waits). Whichever thread clears
/// it first decides: if the logic thread does (after sending its output), the net thread
/// drains the channel when its wait ends, and no wake-up is needed; if the net thread does
/// (its wait ended first), the logic thread wakes the poller as usual. Both sides swap with
/// `SeqCst`, so output sent before the logic thread's swap is visible to the net thread's
/// drain after its own swap.
pub struct Handoff {
    waker: Arc<Waker>,
    waiting: AtomicBool,
}

impl Handoff {
    pub fn new(waker: Arc<Waker>) -> Handoff {
        Handoff {
            waker,
            waiting: AtomicBool::new(false),
        }
    }

    /// Logic thread: output was sent on the channel; make sure the net thread sees it.
    ///
    /// If the net thread waits for it, the two threads share one CPU: the logic thread then
    /// gives the CPU up at once, so the net thread writes the answer now, instead of after the
    /// logic thread's next channel wait has spun (crossbeam spins before it parks) and yielded.
    pub fn output_sent(&self) -> io::Result<()> {
        if self.waiting.swap(false, Ordering::SeqCst) {
            std::thread::yield_now();
            Ok(())
        } else {
            self.waker.wake()
        }
    }

    /// Net thread, before handing events over: it will wait for the answer
    /// ([`Handoff::wait_for_output`]), so the answer needs no wake-up.
    pub fn expect_output(&self) {
        self.waiting.store(true, Ordering::SeqCst);
    }

    /// Net thread, after [`Handoff::expect_output`]: waits up to `timeout` for output.
    /// Whatever arrives, the caller drains the channel right after (output sent meanwhile may
    /// not have woken the poller).
    ///
    /// It yields the CPU first: the logic thread, woken by the hand-over, can only run on it
    /// once this thread lets it, and a blocking receive would spin before it parks.
    pub fn wait_for_output<T>(&self, from_logic: &Receiver<T>, timeout: Duration) -> Option<T> {
        let answer = from_logic.try_recv().ok().or_else(|| {
            std::thread::yield_now();
            from_logic.recv_timeout(timeout).ok()
        });
        self.waiting.swap(false, Ordering::SeqCst);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;
    use mio::{Events, Poll, Token};

    fn handoff() -> (Poll, Arc<Handoff>) {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        (poll, Arc::new(Handoff::new(waker)))
    }

    fn woken(poll: &mut Poll) -> bool {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        !events.is_empty()
    }

    #[test]
    fn output_while_nobody_waits_wakes_the_poller() {
        let (mut poll, handoff) = handoff();
        handoff.output_sent().unwrap();
        assert!(woken(&mut poll));
    }

    #[test]
    fn output_for_a_waiting_net_thread_comes_through_the_channel_alone() {
        let (mut poll, handoff) = handoff();
        let (tx, rx) = unbounded();
        handoff.expect_output();
        let logic = {
            let handoff = handoff.clone();
            std::thread::spawn(move || {
                tx.send(7).unwrap();
                handoff.output_sent().unwrap();
            })
        };
        assert_eq!(
            handoff.wait_for_output(&rx, Duration::from_secs(10)),
            Some(7)
        );
        logic.join().unwrap();
        assert!(!woken(&mut poll), "no wake-up needed");
    }

    #[test]
    fn output_after_the_wait_timed_out_wakes_the_poller() {
        let (mut poll, handoff) = handoff();
        let (tx, rx) = unbounded::<u32>();
        handoff.expect_output();
        assert_eq!(handoff.wait_for_output(&rx, Duration::ZERO), None);
        tx.send(1).unwrap();
        handoff.output_sent().unwrap();
        assert!(woken(&mut poll));
    }
}
