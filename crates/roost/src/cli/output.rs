//! Human tables and machine-readable JSON.

use anyhow::Result;

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header with columns padded to their widest cell.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
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
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

/// Prints `{"ok": true}`, or `text` for humans.
pub fn done(json: bool, text: String) -> Result<()> {
    if json {
        print_json(&serde_json::json!({"ok": true}))
    } else {
        println!("{text}");
        Ok(())
    }
}

/// Prints `value` as JSON, or `text` for humans.
pub fn show(json: bool, value: &impl serde::Serialize, text: &str) -> Result<()> {
    if json {
        print_json(value)
    } else {
        println!("{text}");
        Ok(())
    }
}
