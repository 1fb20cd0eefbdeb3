//! K-way merge of sorted runs with a binary heap of run indices, comparing key bytes
//! (memcmp) and breaking ties by run index, so equal keys come out in run order and the
//! merge is deterministic. Used by the map side (merging spills) and the reduce side
//! (merging every map's segment).

use crate::error::Result;
use crate::run::{Run, key_prefix};

/// A run with a current record, as the heap holds it: the first 8 bytes of its key
/// (big-endian, zero-padded) decide most comparisons without touching the runs.
#[derive(Debug, Clone, Copy)]
struct Head {
    prefix: u64,
    run: usize,
}

/// Merges sorted runs into one sorted stream of records.
#[derive(Debug)]
pub struct Merger {
    runs: Vec<Run>,
    /// Min-heap of the runs that have a current record.
    heap: Vec<Head>,
}

impl Merger {
    /// A merger over `runs`, positioned on the smallest first record.
    ///
    /// # Errors
    /// A run's read error.
    pub fn new(mut runs: Vec<Run>) -> Result<Merger> {
        let mut heap = Vec::with_capacity(runs.len());
        for (i, r) in runs.iter_mut().enumerate() {
            if r.advance()? {
                heap.push(Head { prefix: key_prefix(r.key()), run: i });
            }
        }
        let mut m = Merger { runs, heap };
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    #[inline]
    fn less(&self, a: usize, b: usize) -> bool {
        let (ha, hb) = (self.heap[a], self.heap[b]);
        if ha.prefix != hb.prefix {
            return ha.prefix < hb.prefix;
        }
        match self.runs[ha.run].key().cmp(self.runs[hb.run].key()) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => ha.run < hb.run,
        }
    }

    #[inline]
    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                return;
            }
            let mut c = l;
            if l + 1 < n && self.less(l + 1, l) {
                c = l + 1;
            }
            if self.less(c, i) {
                self.heap.swap(c, i);
                i = c;
            } else {
                return;
            }
        }
    }

    /// The current (smallest) record, or `None` when every run is exhausted.
    #[inline]
    pub fn current(&self) -> Option<(&[u8], &[u8])> {
        let top = self.heap.first()?;
        let r = &self.runs[top.run];
        Some((r.key(), r.value()))
    }

    /// Moves past the current record.
    ///
    /// # Errors
    /// A run's read error.
    #[inline]
    pub fn advance(&mut self) -> Result<()> {
        let Some(&top) = self.heap.first() else { return Ok(()) };
        let run = &mut self.runs[top.run];
        if run.advance()? {
            self.heap[0].prefix = key_prefix(run.key());
        } else {
            let last = self.heap.len() - 1;
            self.heap.swap(0, last);
            self.heap.pop();
        }
        if self.heap.len() > 1 {
            self.sift_down(0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::run::{MemRun, put_record};

    fn run(records: &[(&str, &str)]) -> Run {
        let mut data = Vec::new();
        for (k, v) in records {
            put_record(&mut data, k.as_bytes(), v.as_bytes());
        }
        Run::Mem(MemRun::new(Bytes::from(data)))
    }

    #[test]
    fn merges_in_key_then_run_order() {
        let runs = vec![
            run(&[("a", "0"), ("c", "0"), ("e", "0")]),
            run(&[]),
            run(&[("a", "2"), ("b", "2"), ("e", "2"), ("f", "2")]),
            run(&[("d", "3")]),
        ];
        let mut m = Merger::new(runs).unwrap();
        let mut out = Vec::new();
        while let Some((k, v)) = m.current() {
            out.push(format!("{}{}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)));
            m.advance().unwrap();
        }
        assert_eq!(out, ["a0", "a2", "b2", "c0", "d3", "e0", "e2", "f2"]);
        assert!(Merger::new(Vec::new()).unwrap().current().is_none());
    }
}
