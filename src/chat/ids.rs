//! How ids (chatclientid, chatroomid, userid, snapid, queued message ids) are handed out.
//!
//! A single server counts 1, 2, 3, …. The nodes of a cluster share one id space without
//! asking each other: each node holds a slot, and hands out only the ids that leave its slot's
//! remainder when divided by the number of slots, each one above every id it has seen (its
//! own and, through the shared state, the other nodes'). Two nodes never pick the same id.

/// Which ids this server may hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    stride: u64,
    offset: u64,
}

impl Default for Ids {
    fn default() -> Self {
        Ids::ALONE
    }
}

impl Ids {
    /// Every id: a server on its own.
    pub const ALONE: Ids = Ids {
        stride: 1,
        offset: 0,
    };

    /// The ids of slot `slot` of `slots` (`slot < slots`).
    pub fn slot(slot: u64, slots: u64) -> Ids {
        assert!(slot < slots, "slot {slot} of {slots}");
        Ids {
            stride: slots,
            offset: slot,
        }
    }

    /// The smallest id of ours above `last`.
    pub fn after(self, last: u64) -> u64 {
        let next = last + 1;
        let r = next % self.stride;
        next + (self.offset + self.stride - r) % self.stride
    }
}

#[cfg(test)]
mod tests {
    use super::Ids;

    #[test]
    fn alone_counts_on_and_slots_never_meet() {
        assert_eq!(Ids::ALONE.after(0), 1);
        assert_eq!(Ids::ALONE.after(41), 42);
        let a = Ids::slot(1, 4);
        let b = Ids::slot(2, 4);
        assert_eq!(a.after(0), 1);
        assert_eq!(a.after(1), 5);
        assert_eq!(b.after(0), 2);
        assert_eq!(b.after(5), 6);
        let mut last = 0;
        for _ in 0..100 {
            let (x, y) = (a.after(last), b.after(last));
            assert!(x > last && y > last && x % 4 == 1 && y % 4 == 2);
            last = x.max(y);
        }
        assert_eq!(Ids::slot(0, 4).after(3), 4);
    }
}
