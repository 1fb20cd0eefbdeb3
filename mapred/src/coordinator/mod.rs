//! The coordinator: accepts jobs, schedules their tasks on workers, commits their
//! outputs. [`core`] holds the state machine (no I/O); [`service`] is the gRPC edge and
//! carries out the core's actions against the chunk store; [`run`] wires them to a
//! listener and a housekeeping loop.

pub mod core;
pub mod service;

pub use service::{CoordinatorService, run};
