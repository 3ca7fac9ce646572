//! The `--all-netns` report: the worst verdict first, then each namespace's own report (text),
//! or the fleet JSON contract of docs/fleet.schema.json.

use porthog_core::{FleetReport, NamespaceReport};

use super::text;

pub fn render_json(fleet: &FleetReport) -> serde_json::Result<String> {
    let mut s = serde_json::to_string_pretty(fleet)?;
    s.push('\n');
    Ok(s)
}

pub fn render_text(fleet: &FleetReport, top: usize, color: bool, width: usize) -> String {
    let mut out = String::new();
    let n = fleet.namespaces.len();
    match fleet.namespaces.first() {
        Some(worst) => out.push_str(&format!(
            "{}  (worst of {n} network namespaces: {})\n",
            text::verdict_line(&worst.report, color),
            header(worst)
        )),
        None => out.push_str("UNKNOWN  no network namespace could be read\n"),
    }
    for gap in &fleet.gaps {
        out.push_str(&format!("  gap: {}\n", gap.message));
        if let Some(advice) = &gap.advice {
            out.push_str(&format!("       {advice}\n"));
        }
    }
    for ns in &fleet.namespaces {
        out.push_str(&format!("\n=== network namespace {} ===\n", header(ns)));
        out.push_str(&text::render(&ns.report, top, color, width));
    }
    out
}

/// "blue (net:[4026532281], container 3f4e1c0a9b8d, pids 12 13)".
pub fn header(ns: &NamespaceReport) -> String {
    let mut parts = vec![];
    if ns.name.is_some() {
        parts.push(format!("net:[{}]", ns.inode));
    }
    if let Some(c) = &ns.container {
        parts.push(c.clone());
    }
    match ns.pids.len() {
        0 => parts.push("no process".into()),
        1..=8 => parts.push(format!(
            "pids {}",
            ns.pids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
        )),
        k => parts.push(format!("{k} processes")),
    }
    format!("{} ({})", ns.label(), parts.join(", "))
}
