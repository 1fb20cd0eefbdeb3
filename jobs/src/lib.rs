//! Example MapReduce jobs.
//!
//! Empty on purpose until the MapReduce runtime exists (see the `mapred` crate): it will
//! hold wordcount, grep, invertedindex, teragen/terasort/teravalidate, sleep and fail.
