//! The reduce side: merging the sorted segments fetched from every map (see
//! [`crate::shuffle`] for the fetching, which keeps segments in memory up to
//! `mapred.reduce.memory.mb` and streams the rest to local disk), grouping equal keys and
//! calling the reducer once per key with a lazy iterator over its values.
//!
//! Grouping compares encoded key bytes, so the reducer's key is decoded once per group and
//! values are decoded only as the reducer pulls them; values it does not read are skipped
//! without decoding.

use crate::api::{Context, Reducer, Sink, TaskInfo, ValueSource, Values};
use crate::config::JobConf;
use crate::counters::{self as c, Counters};
use crate::error::Result;
use crate::key::DecodeKey;
use crate::merge::Merger;
use crate::progress::Skipper;

/// The values of the group whose key is `key`, pulled from the merge.
struct Group<'m> {
    merger: &'m mut Merger,
    key: &'m [u8],
    started: bool,
    done: bool,
}

impl ValueSource for Group<'_> {
    fn next_value(&mut self) -> Result<Option<&[u8]>> {
        if self.done {
            return Ok(None);
        }
        if self.started {
            self.merger.advance()?;
        } else {
            self.started = true;
        }
        match self.merger.current() {
            Some((k, v)) if k == self.key => Ok(Some(v)),
            _ => {
                self.done = true;
                Ok(None)
            }
        }
    }

    fn key(&self) -> &[u8] {
        self.key
    }
}

/// Runs `reducer` over the merged runs, writing through `sink`. Before each key group
/// `skipper` records its index and may say to skip it (it crashed earlier attempts): its
/// values are then drained unread and its key listed.
///
/// # Errors
/// The reducer's errors, undecodable keys or values, read errors of the runs.
pub(crate) fn reduce_merged<R: Reducer>(
    mut merger: Merger,
    reducer: &mut R,
    sink: &mut dyn Sink<R::KeyOut, R::ValueOut>,
    conf: &JobConf,
    info: &TaskInfo,
    counters: &mut Counters,
    skipper: &mut Skipper<'_>,
) -> Result<()> {
    reducer.setup(&mut Context::new(sink, counters, conf, info))?;
    let mut key_buf = Vec::new();
    let (mut groups, mut records) = (0u64, 0u64);
    while let Some((k, _)) = merger.current() {
        key_buf.clear();
        key_buf.extend_from_slice(k);
        if !skipper.enter(groups, None, || key_buf.as_slice().into()) {
            let mut group =
                Group { merger: &mut merger, key: &key_buf, started: false, done: false };
            while group.next_value()?.is_some() {
                records += 1;
            }
            groups += 1;
            continue;
        }
        let key = R::KeyIn::decode_key(&key_buf)?;
        let mut group = Group { merger: &mut merger, key: &key_buf, started: false, done: false };
        let mut values = Values::new(&mut group);
        reducer.reduce(key, &mut values, &mut Context::new(sink, counters, conf, info))?;
        if let Some(e) = values.take_error() {
            return Err(e);
        }
        records += values.read();
        // Skip whatever the reducer left unread, so the merge stands on the next key.
        while group.next_value()?.is_some() {
            records += 1;
        }
        groups += 1;
    }
    skipper.done();
    counters.add(c::TASK, c::REDUCE_INPUT_GROUPS, groups);
    counters.add(c::TASK, c::REDUCE_INPUT_RECORDS, records);
    reducer.cleanup(&mut Context::new(sink, counters, conf, info))?;
    sink.flush_counts(counters);
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::key::{EncodeKey, encode_value};
    use crate::run::{MemRun, Run, put_record};

    fn run(records: &[(&str, u64)]) -> Run {
        let mut data = Vec::new();
        for (k, v) in records {
            let mut val = Vec::new();
            encode_value(v, &mut val).unwrap();
            put_record(&mut data, &k.to_key_bytes(), &val);
        }
        Run::Mem(MemRun::new(Bytes::from(data)))
    }

    /// Sums values, but reads only the first `limit` of each group.
    struct SumFirst {
        limit: usize,
    }

    impl Reducer for SumFirst {
        type KeyIn = String;
        type ValueIn = u64;
        type KeyOut = str;
        type ValueOut = u64;
        fn reduce(
            &mut self,
            key: String,
            values: &mut Values<'_, u64>,
            ctx: &mut Context<'_, str, u64>,
        ) -> Result<()> {
            let s: u64 = values.take(self.limit).sum();
            ctx.emit(&key, &s)
        }
    }

    struct Collect(Vec<(String, u64)>);
    impl Sink<str, u64> for Collect {
        fn emit(&mut self, key: &str, value: &u64, _c: &mut Counters) -> Result<()> {
            self.0.push((key.to_owned(), *value));
            Ok(())
        }
    }

    fn reduce(limit: usize) -> (Vec<(String, u64)>, Counters) {
        reduce_skipping(limit, &[]).0
    }

    type Reduced = ((Vec<(String, u64)>, Counters), Vec<u8>);

    fn reduce_skipping(limit: usize, skip: &[u64]) -> Reduced {
        let runs = vec![
            run(&[("a", 1), ("b", 2), ("d", 4)]),
            run(&[("a", 10), ("c", 30), ("d", 40)]),
            run(&[("a", 100), ("d", 400)]),
        ];
        let mut sink = Collect(Vec::new());
        let mut counters = Counters::new();
        let dir = tempfile::tempdir().unwrap();
        let progress = crate::progress::Progress::create(&dir.path().join("progress"));
        let mut skipper = Skipper::new(&progress, skip, "partition 0");
        reduce_merged(
            Merger::new(runs).unwrap(),
            &mut SumFirst { limit },
            &mut sink,
            &JobConf::new(),
            &TaskInfo::default(),
            &mut counters,
            &mut skipper,
        )
        .unwrap();
        ((sink.0, counters), skipper.skipped)
    }

    #[test]
    fn skipped_groups_are_drained_and_listed() {
        let ((out, counters), skipped) = reduce_skipping(usize::MAX, &[1, 3]);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(skipped, b"partition 0\t-\t1\tb\npartition 0\t-\t3\td\n");
        assert_eq!(counters.get(c::TASK, c::REDUCE_INPUT_RECORDS), 8);
    }

    #[test]
    fn groups_equal_keys_across_runs_in_order() {
        let (out, counters) = reduce(usize::MAX);
        let want: Vec<(String, u64)> = [("a", 111), ("b", 2), ("c", 30), ("d", 444)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(out, want);
        assert_eq!(counters.get(c::TASK, c::REDUCE_INPUT_GROUPS), 4);
        assert_eq!(counters.get(c::TASK, c::REDUCE_INPUT_RECORDS), 8);
    }

    #[test]
    fn unread_values_are_skipped() {
        let (out, counters) = reduce(1);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(out[0].1, 1, "the first value of a comes from the first run");
        assert_eq!(counters.get(c::TASK, c::REDUCE_INPUT_RECORDS), 8);
    }
}
