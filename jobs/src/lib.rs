//! Example MapReduce jobs, as Hadoop ships them: [`wordcount`], [`grep`],
//! [`invertedindex`], [`terasort`] (teragen / terasort / teravalidate), and the test jobs
//! [`sleep`], [`fail`] and [`faulty`] (word count that crashes, hangs and straggles).
//! [`registry`] registers them all; the `mapred-examples` binary
//! is that registry behind [`mapred::runtime::main`]:
//!
//! ```text
//! mapred-examples submit wordcount --input /books --output /counts
//! ```
#![warn(missing_docs)]

pub mod fail;
pub mod faulty;
pub mod grep;
pub mod invertedindex;
pub mod sleep;
pub mod terasort;
pub mod wordcount;

use mapred::Registry;

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
}

/// Folds counts: the combiner of the counting jobs.
pub fn sum(acc: &mut u64, v: u64) {
    *acc += v;
}
