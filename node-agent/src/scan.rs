//! `couchestor-node-agent scan`: discover this machine's block devices and print them as
//! a table or as JSON (the devices exactly as `serve --publish-storage-node` publishes
//! them, plus what was skipped and why).

use anyhow::Context;
use couchestor_core::api::{Device, SmartData};

use crate::config::ScanConfig;
use crate::discovery::{self, Inventory};

pub async fn run(config: &ScanConfig) -> anyhow::Result<()> {
    let options = config.discovery.options(config.all);
    let inventory = tokio::task::spawn_blocking(move || discovery::discover(&options))
        .await
        .context("discovery task")??;
    if config.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&inventory).context("encode the inventory")?
        );
    } else {
        print!("{}", table(&inventory));
    }
    Ok(())
}

const HEADERS: [&str; 9] = [
    "DEVICE",
    "SIZE",
    "TRANSPORT",
    "ROTATIONAL",
    "MODEL",
    "SERIAL",
    "TIER",
    "REASON",
    "SMART",
];

/// The inventory as an aligned text table, then skipped devices and notes.
pub fn table(inventory: &Inventory) -> String {
    let rows: Vec<[String; 9]> = inventory.devices.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADERS.map(String::from));
    for row in &rows {
        line(row);
    }
    if inventory.devices.is_empty() {
        out.push_str("(no block devices)\n");
    }
    for skipped in &inventory.skipped {
        out.push_str(&format!(
            "skipped {}: {} (--all includes it)\n",
            skipped.name, skipped.reason
        ));
    }
    for note in &inventory.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

fn row(d: &Device) -> [String; 9] {
    let unknown = || "?".to_owned();
    [
        d.name.clone(),
        d.size_bytes.map_or_else(unknown, human_size),
        serde_json::to_value(d.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(unknown),
        d.rotational
            .map_or_else(unknown, |r| if r { "yes" } else { "no" }.to_owned()),
        d.model.clone().unwrap_or_else(unknown),
        d.serial.clone().unwrap_or_else(unknown),
        d.suggested_tier
            .map_or_else(|| "unknown".to_owned(), |t| t.as_str().to_owned()),
        d.tier_reason.clone(),
        match (&d.smart, &d.smart_absent_reason) {
            (Some(smart), _) => smart_summary(smart),
            (None, Some(reason)) => format!("absent ({reason})"),
            (None, None) => "absent".to_owned(),
        },
    ]
}

fn smart_summary(s: &SmartData) -> String {
    let mut parts = Vec::new();
    match s.passed {
        Some(true) => parts.push("passed".to_owned()),
        Some(false) => parts.push("FAILED".to_owned()),
        None => {}
    }
    if let Some(t) = s.temperature_celsius {
        parts.push(format!("{t}°C"));
    }
    if let Some(h) = s.power_on_hours {
        parts.push(format!("{h} h on"));
    }
    if let Some(e) = s.media_errors {
        parts.push(format!("{e} media errors"));
    }
    if let Some(p) = s.percentage_used {
        parts.push(format!("{p}% used"));
    }
    parts.join(", ")
}

/// Bytes in binary units with one decimal (`256.0 GiB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_printed_in_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(256 << 30), "256.0 GiB");
        assert_eq!(human_size(4_000_787_030_016), "3.6 TiB");
    }

    #[test]
    fn smart_is_summarised_with_only_what_was_reported() {
        let s = SmartData {
            passed: Some(false),
            temperature_celsius: Some(41),
            ..SmartData::default()
        };
        assert_eq!(smart_summary(&s), "FAILED, 41°C");
    }
}
