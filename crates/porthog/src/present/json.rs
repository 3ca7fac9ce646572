//! The JSON report: the versioned contract of docs/report.schema.json, pretty-printed.

use porthog_core::Report;

pub fn render(report: &Report) -> serde_json::Result<String> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}
