//! The requests a machine has out, by [`RequestId`]: what each one was for and when it
//! expires. The session and the inbox both keep one.
//!
//! A machine has a handful of requests out at a time (a session: its register or beat and
//! perhaps a `current_task` report; an inbox: one poll plus its bounded downloads and acks),
//! so a vector in id order beats a tree: ids only grow, so a new request is pushed at the
//! end, and a lookup is a binary search over a few entries. Like the output queues
//! (`queue.rs`), the table keeps no buffer while nothing is out: an idle workspace spends
//! most of its life between requests, and 10,000 of them would otherwise hold a few hundred
//! bytes each for nothing. The price is one small allocation per request.

use crate::http::RequestId;

/// Requests out, ascending by id. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct InFlightTable<T> {
    entries: Vec<(RequestId, T)>,
}

impl<T> Default for InFlightTable<T> {
    fn default() -> Self {
        InFlightTable {
            entries: Vec::new(),
        }
    }
}

impl<T> InFlightTable<T> {
    /// Records request `id`. Ids are normally new and larger than any before (pushed at the
    /// end); an id put back after a `remove` goes to its sorted place; an id already present
    /// has its entry replaced.
    pub(crate) fn insert(&mut self, id: RequestId, value: T) {
        match self.entries.last() {
            Some((last, _)) if *last >= id => match self.position(id) {
                Ok(at) => {
                    if let Some(entry) = self.entries.get_mut(at) {
                        entry.1 = value;
                    }
                }
                Err(at) => self.entries.insert(at, (id, value)),
            },
            Some(_) | None => self.entries.push((id, value)),
        }
    }

    /// Takes request `id` out; when it was the last one, the buffer is released.
    pub(crate) fn remove(&mut self, id: RequestId) -> Option<T> {
        let at = self.position(id).ok()?;
        let (_, value) = self.entries.remove(at);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(value)
    }

    /// Request `id`, if it is out.
    pub(crate) fn get(&self, id: RequestId) -> Option<&T> {
        let at = self.position(id).ok()?;
        self.entries.get(at).map(|(_, value)| value)
    }

    /// The most recent request, to amend it right after sending.
    pub(crate) fn last_mut(&mut self) -> Option<&mut T> {
        self.entries.last_mut().map(|(_, value)| value)
    }

    /// Every request out, ascending by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (RequestId, &T)> + '_ {
        self.entries.iter().map(|(id, value)| (*id, value))
    }

    /// What every request out was for, ascending by id.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries.iter().map(|(_, value)| value)
    }

    /// Forgets every request (shutdown), releasing the buffer.
    pub(crate) fn clear(&mut self) {
        self.entries = Vec::new();
    }

    fn position(&self, id: RequestId) -> Result<usize, usize> {
        self.entries.binary_search_by(|(known, _)| known.cmp(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_id_order_finds_and_removes_and_holds_no_buffer_when_empty() {
        let mut t = InFlightTable::default();
        for id in [1, 2, 5, 9] {
            t.insert(RequestId(id), id * 10);
        }
        assert_eq!(t.remove(RequestId(5)), Some(50));
        // Put back (an ignored bogus outcome): it returns to its sorted place.
        t.insert(RequestId(5), 51);
        t.insert(RequestId(2), 21);
        let ids: Vec<(u64, u64)> = t.iter().map(|(id, v)| (id.0, *v)).collect();
        assert_eq!(ids, vec![(1, 10), (2, 21), (5, 51), (9, 90)]);
        assert_eq!(t.get(RequestId(9)), Some(&90));
        assert_eq!(t.get(RequestId(3)), None);
        assert_eq!(t.remove(RequestId(3)), None);
        for id in [9, 1, 2, 5] {
            assert!(t.remove(RequestId(id)).is_some());
        }
        assert_eq!(t.entries.capacity(), 0);
        t.insert(RequestId(10), 1);
        if let Some(v) = t.last_mut() {
            *v = 2;
        }
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![2]);
        t.clear();
        assert_eq!(t.entries.capacity(), 0);
    }
}
