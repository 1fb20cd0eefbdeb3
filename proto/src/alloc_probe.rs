//! A global allocator for test binaries that remembers the largest single allocation a
//! thread makes, so a property test can check that a decoder given `n` bytes never
//! allocates far more than `n`, whatever a length field inside them claims.
//!
//! A crate's unit-test binary installs it once (in `lib.rs`):
//!
//! ```ignore
//! #[cfg(test)]
//! #[global_allocator]
//! static ALLOC: proto::alloc_probe::Probe = proto::alloc_probe::Probe;
//! ```
//!
//! and a test measures with [`largest_allocation`]. While it measures, an allocation over
//! [`CEILING`] fails at once (the process aborts naming its size) instead of taking the
//! machine's memory: a decoder that believes a length prefix of 2^40 bytes is then a loud
//! failure, not a swapping test run. Only built with the `alloc-probe` feature, which
//! crates enable for their dev-dependency on `proto`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Largest allocation allowed while [`largest_allocation`] measures.
pub const CEILING: usize = 1 << 30;

thread_local! {
    /// Largest allocation seen on this thread while measuring.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// True while [`largest_allocation`] runs on this thread.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, noting allocation sizes for [`largest_allocation`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe;

/// Notes an allocation of `size` bytes; false if it must fail.
fn note(size: usize) -> bool {
    // `try_with`: the thread-locals may be gone while a thread exits.
    if !MEASURING.try_with(Cell::get).unwrap_or(false) {
        return true;
    }
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    size <= CEILING
}

// SAFETY: every call is passed on unchanged to `System`, except allocations refused with
// a null pointer, which `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as the caller promised us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as the caller promised us.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: as the caller promised us.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller promised us.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the largest single allocation (or reallocation)
/// this thread made meanwhile, in bytes. Measures only when [`Probe`] is the global
/// allocator (0 otherwise).
pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let was = MEASURING.with(|m| m.replace(true));
    let before = LARGEST.with(|l| l.replace(0));
    let out = f();
    let largest = LARGEST.with(|l| l.replace(before.max(l.get())));
    MEASURING.with(|m| m.set(was));
    (out, largest)
}
