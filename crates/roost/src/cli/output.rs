//! Human tables and machine-readable JSON, written to stdout.
//!
//! Every write goes through [`write_stdout`], so a reader that goes away
//! (`roost machine list | head -1`) ends the command as [`StdoutClosed`],
//! which `main` answers with status 0 and no message: the output was simply
//! not wanted any more. Other write failures stay errors.

use anyhow::Result;
use std::fmt::Display;
use std::io::{self, Write};

/// The reader of stdout closed it before the command finished writing.
#[derive(Debug)]
pub struct StdoutClosed;

impl Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether `err` ended the command because stdout was closed (see [`StdoutClosed`]).
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// The error for a failed write to stdout: [`StdoutClosed`] for a broken
/// pipe, otherwise the I/O error itself.
fn stdout_error(err: io::Error) -> anyhow::Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(err).context("cannot write to stdout")
    }
}

/// Writes `bytes` to stdout as they are, and flushes them.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Writes `text` and a newline to stdout.
pub fn print_line(text: impl Display) -> Result<()> {
    write_stdout(format!("{text}\n").as_bytes())
}

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    print_line(serde_json::to_string_pretty(value)?)
}

/// Prints rows under a header with columns padded to their widest cell.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        print_line(padded.join("  ").trim_end())
    };
    line(header.iter().map(|h| h.to_string()).collect())?;
    rows.into_iter().try_for_each(line)
}

/// Prints `{"ok": true}`, or `text` for humans.
pub fn done(json: bool, text: String) -> Result<()> {
    show(json, &serde_json::json!({"ok": true}), &text)
}

/// Prints `value` as JSON, or `text` for humans.
pub fn show(json: bool, value: &impl serde::Serialize, text: &str) -> Result<()> {
    if json {
        print_json(value)
    } else {
        print_line(text)
    }
}
