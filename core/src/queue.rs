//! The output queues of the machines: an idle machine holds no memory for them.
//!
//! A machine's queue fills with a few actions per event and is drained at once, so its
//! buffer is only ever needed for an instant. Kept between events it would cost a few
//! hundred bytes to kilobytes per machine (four entries of 120–250 bytes each, in three
//! queues per workspace), which is most of what 10,000 idle workspaces cost; releasing it
//! costs one small allocation at the next event.

use std::collections::VecDeque;

/// The next item of `queue`; when it is empty, its buffer is released.
pub(crate) fn pop_or_release<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let item = queue.pop_front();
    if item.is_none() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_keeps_no_buffer() {
        let mut q: VecDeque<u64> = (0..10).collect();
        let drained: Vec<u64> = std::iter::from_fn(|| pop_or_release(&mut q)).collect();
        assert_eq!(drained, (0..10).collect::<Vec<_>>());
        assert_eq!(q.capacity(), 0);
    }
}
