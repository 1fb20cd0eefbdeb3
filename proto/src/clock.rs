//! The wall clock as every process records it: milliseconds since the Unix epoch, in one
//! place so that the master's records and the coordinator's journal agree on it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
