//! Progress bars for `put` and `get`: on stderr, and only when stderr is a terminal, so
//! scripts and pipes stay quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for a transfer of `len` bytes (unknown for stdin), or `None` when stderr is not a
/// terminal.
pub(super) fn transfer_bar(label: &str, len: Option<u64>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::no_length().with_style(
            ProgressStyle::with_template("{msg} {bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(label.to_owned());
    Some(bar)
}
