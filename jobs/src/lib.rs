//! Example MapReduce jobs, as Hadoop ships them: [`wordcount`], [`grep`],
//! [`invertedindex`], [`terasort`] (teragen / terasort / teravalidate), [`join`] (two
//! inputs, two mappers), [`secondarysort`] (composite keys grouped by a prefix), [`pi`]
//! (generated input), [`wordmean`], [`multifilewc`] (whole-file input), [`sort`]
//! (key/value text), [`topk`] (records), the chain `wordfreq` (word count, then top k),
//! and the test jobs [`sleep`], [`fail`] and [`faulty`] (word count that crashes, hangs
//! and straggles). [`registry`] registers them all; the `mapred-examples` binary is that
//! registry behind [`mapred::runtime::main`]:
//!
//! ```text
//! mapred-examples submit wordcount --input /books --output /counts
//! ```
#![warn(missing_docs)]

pub mod fail;
pub mod faulty;
pub mod grep;
pub mod invertedindex;
pub mod join;
pub mod multifilewc;
pub mod pi;
pub mod secondarysort;
pub mod sleep;
pub mod sort;
pub mod terasort;
pub mod topk;
pub mod wordcount;
pub mod wordmean;

use mapred::{Chain, Registry};

/// Every example job.
pub fn registry() -> Registry {
    Registry::new()
        .register(wordcount::job())
        .register(grep::job())
        .register(invertedindex::job())
        .register(terasort::teragen())
        .register(terasort::terasort())
        .register(terasort::teravalidate())
        .register(sleep::job())
        .register(fail::job())
        .register(faulty::job())
        .register(join::job())
        .register(secondarysort::job())
        .register(pi::job())
        .register(wordmean::job())
        .register(multifilewc::job())
        .register(sort::job())
        .register(topk::job())
        .chain(
            Chain::new("wordfreq", "the most frequent words: word count, then top k")
                .then("wordcount")
                .then("topk"),
        )
}

/// Folds counts: the combiner of the counting jobs.
pub fn sum(acc: &mut u64, v: u64) {
    *acc += v;
}
