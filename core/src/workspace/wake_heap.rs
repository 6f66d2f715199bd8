//! When to wake which workspace: a min-heap of `(deadline, slot)` with lazy invalidation.
//!
//! The [`super::Fleet`] owns many [`super::Workspace`] machines. After draining one it
//! records the workspace's `poll_timeout()` here; [`WakeHeap::next`] is the fleet's own
//! timeout and [`WakeHeap::pop_due`] says which workspaces to call `handle_timeout` on. A slot whose
//! deadline moved leaves a stale entry behind, which is skipped when it surfaces, so every
//! update is O(log n) and thousands of workspaces cost almost nothing while idle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Deadlines of `n` slots.
#[derive(Debug, Default)]
pub(crate) struct WakeHeap {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The deadline currently valid for each slot.
    current: Vec<Option<Instant>>,
}

impl WakeHeap {
    /// A heap for `slots` machines, none of them due.
    pub(crate) fn new(slots: usize) -> Self {
        WakeHeap {
            heap: BinaryHeap::with_capacity(slots),
            current: vec![None; slots],
        }
    }

    /// Records slot `idx`'s next deadline (`None`: it never needs a timeout).
    pub(crate) fn set(&mut self, idx: usize, next: Option<Instant>) {
        let Some(current) = self.current.get_mut(idx) else {
            return;
        };
        if *current == next {
            return;
        }
        *current = next;
        if let Some(at) = next {
            self.heap.push(Reverse((at, idx)));
        }
    }

    /// The earliest entry (possibly stale: waking early is harmless, the machines accept
    /// spurious `handle_timeout` calls).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Drops stale entries from the top, so [`WakeHeap::next`] is exact.
    pub(crate) fn prune(&mut self) {
        while let Some(Reverse((at, idx))) = self.heap.peek().copied() {
            if self.current.get(idx).copied().flatten() == Some(at) {
                return;
            }
            self.heap.pop();
        }
    }

    /// The next slot due at `now`, removing its deadline; `None` when nothing is due.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(Reverse((at, idx))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            let Some(current) = self.current.get_mut(idx) else {
                continue;
            };
            if *current == Some(at) {
                *current = None;
                return Some(idx);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stale_entries_are_skipped_and_order_is_by_deadline() {
        #[allow(clippy::disallowed_methods)] // any origin will do: the test only adds to it
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut h = WakeHeap::new(3);
        h.set(0, Some(t0 + 5 * s));
        h.set(1, Some(t0 + 2 * s));
        h.set(2, Some(t0 + 3 * s));
        h.set(0, Some(t0 + s)); // moved earlier: the old entry goes stale
        h.set(2, None); // cancelled
        assert_eq!(h.next(), Some(t0 + s));
        assert_eq!(h.pop_due(t0), None);
        let now = t0 + 10 * s;
        assert_eq!(h.pop_due(now), Some(0));
        assert_eq!(h.pop_due(now), Some(1));
        assert_eq!(
            h.pop_due(now),
            None,
            "stale entries for slots 0 and 2 are skipped"
        );
        h.set(1, Some(t0 + 2 * s));
        assert_eq!(
            h.pop_due(now),
            Some(1),
            "a slot can be re-armed with its old deadline"
        );
        h.set(7, Some(t0)); // out of range: ignored, never panics
        assert_eq!(h.pop_due(now), None);
    }
}
