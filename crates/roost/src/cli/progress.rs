//! Showing a streamed image pull: one progress bar per layer on a terminal, one plain line
//! per layer state change otherwise (logs, CI), so both stay readable.

use super::output::{print_line, write_stdout};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::fmt::Write;
use std::io::IsTerminal;

const BAR_WIDTH: usize = 30;

#[derive(Clone, Deserialize)]
struct Progress {
    layer: String,
    status: String,
    downloaded: u64,
    size: u64,
}

#[derive(Deserialize)]
struct Line {
    progress: Option<Progress>,
    image: Option<serde_json::Value>,
    error: Option<String>,
}

/// Renders the JSON lines of `POST /v1/images/pull` until the final line, and returns the
/// pulled image or the error roost reported.
pub async fn show_pull(mut response: reqwest::Response) -> Result<serde_json::Value> {
    let mut display = Display::new(std::io::stdout().is_terminal());
    let mut pending = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .context("the pull stream from roost broke off")?
    {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line: Line = serde_json::from_slice(&line).with_context(|| {
                format!(
                    "unexpected line from roost: {}",
                    String::from_utf8_lossy(&line)
                )
            })?;
            if let Some(progress) = line.progress {
                display.update(progress)?;
            } else if let Some(error) = line.error {
                bail!("{error}");
            } else if let Some(image) = line.image {
                return Ok(image);
            }
        }
    }
    bail!("roost ended the pull stream without a result; check its log")
}

struct Display {
    terminal: bool,
    /// Layers in the order they were first reported, with their latest progress.
    layers: Vec<Progress>,
    drawn: usize,
}

impl Display {
    fn new(terminal: bool) -> Display {
        Display {
            terminal,
            layers: Vec::new(),
            drawn: 0,
        }
    }

    fn update(&mut self, progress: Progress) -> Result<()> {
        let index = match self.layers.iter().position(|l| l.layer == progress.layer) {
            Some(index) => index,
            None => {
                self.layers.push(Progress {
                    status: String::new(),
                    ..progress.clone()
                });
                self.layers.len() - 1
            }
        };
        let changed = self.layers[index].status != progress.status;
        self.layers[index] = progress;
        if !self.terminal {
            if changed {
                print_line(plain_line(&self.layers[index]))?;
            }
            return Ok(());
        }
        let mut frame = String::new();
        if self.drawn > 0 {
            write!(frame, "\x1b[{}A", self.drawn)?;
        }
        for layer in &self.layers {
            writeln!(frame, "\x1b[2K{}", bar_line(layer))?;
        }
        self.drawn = self.layers.len();
        write_stdout(frame.as_bytes())
    }
}

fn short(layer: &str) -> &str {
    let hex = layer.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

fn plain_line(p: &Progress) -> String {
    format!("{} {} ({} bytes)", short(&p.layer), p.status, p.size)
}

fn bar_line(p: &Progress) -> String {
    let filled = if p.size == 0 {
        BAR_WIDTH
    } else {
        ((p.downloaded.min(p.size) as u128 * BAR_WIDTH as u128) / p.size as u128) as usize
    };
    format!(
        "{} [{}{}] {:>7.1}/{:.1} MB {}",
        short(&p.layer),
        "#".repeat(filled),
        " ".repeat(BAR_WIDTH - filled),
        p.downloaded as f64 / 1e6,
        p.size as f64 / 1e6,
        p.status
    )
}
