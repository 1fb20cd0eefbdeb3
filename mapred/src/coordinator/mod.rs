//! The coordinator: accepts jobs, schedules their tasks on workers, recovers from failed
//! tasks, dead workers and lost map outputs, and commits job outputs. [`model`] is its
//! vocabulary; [`core`] holds the state machine (no I/O) with [`sched`] (choosing work,
//! speculation), [`faults`] (worker death, lost output) and [`skip`] (skipping records
//! shown to crash deterministically); [`journal`] records jobs on
//! local disk so a restart does not forget them; [`service`] is the gRPC edge that carries
//! out the core's actions against the chunk store and runs the housekeeping loop, and
//! [`access`] its rules of who may do what to which job.

pub mod access;
pub mod core;
pub mod faults;
pub mod journal;
pub mod model;
pub mod sched;
pub mod service;
pub mod skip;

pub use service::{CoordinatorService, run};
