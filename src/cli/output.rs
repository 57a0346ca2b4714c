//! Printing results: tables for people, JSON for scripts (`-o json`).
//!
//! Everything printed here is metadata. Values never reach this module.

use std::io::Write;

use anyhow::Result;
use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::model::{Secret, SecretBinding};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Write one block of text to stdout. A closed pipe (`| head`) is not an
/// error: the reader has what it wanted.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Pretty JSON on stdout.
pub fn emit_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    emit(&serde_json::to_string_pretty(value)?)
}

/// A borderless table with a header row, like `kubectl get`.
pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.to_vec());
    t
}

/// Print a table without comfy-table's outer padding (one space at the
/// start of every line, trailing blanks at the end).
pub fn emit_table(t: &Table) -> Result<()> {
    let text: Vec<String> = t
        .lines()
        .map(|l| {
            let l = l.trim_end();
            l.strip_prefix(' ').unwrap_or(l).to_string()
        })
        .collect();
    emit(&text.join("\n"))
}

/// `-` for a missing optional field.
pub fn or_dash(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn fmt_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Epoch milliseconds relative to now: `just now`, `5m ago`, `3h ago`,
/// `12d ago`; older than 60 days, the date.
pub fn fmt_age(ms: i64) -> String {
    let ago = (crate::model::now_ms() - ms).max(0) / 1000;
    match ago {
        0..=59 => "just now".into(),
        60..=3599 => format!("{}m ago", ago / 60),
        3600..=86_399 => format!("{}h ago", ago / 3600),
        86_400..=5_183_999 => format!("{}d ago", ago / 86_400),
        _ => fmt_time(ms)[..10].to_string(),
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so that no date crate is needed for one column.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Secrets as a table: one row each.
pub fn secrets_table(secrets: &[Secret], with_workspace: bool) -> Table {
    let mut headers = vec!["NAME", "ID", "SHARED", "STATE", "MASKED", "UPDATED", "BY"];
    if with_workspace {
        headers.insert(0, "WORKSPACE");
    }
    let mut t = table(&headers);
    for s in secrets {
        let mut row = vec![
            s.secret_name.clone(),
            s.secret_id.clone(),
            yes_no(s.is_shared).into(),
            s.state.to_string(),
            s.masked_value.clone(),
            fmt_age(s.last_updated_at),
            or_dash(s.last_updated_by.as_deref()).into(),
        ];
        if with_workspace {
            row.insert(0, s.workspace.clone());
        }
        t.add_row(row);
    }
    t
}

/// One secret as a two-column FIELD / VALUE table.
pub fn secret_detail(s: &Secret) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    let mut rows: Vec<(&str, String)> = vec![
        ("Name:", s.secret_name.clone()),
        ("ID:", s.secret_id.clone()),
        ("Workspace:", s.workspace.clone()),
        ("Shared:", yes_no(s.is_shared).into()),
        ("State:", s.state.to_string()),
        ("Masked value:", s.masked_value.clone()),
        ("Provider:", or_dash(s.provider.as_deref()).into()),
        (
            "Created:",
            format!(
                "{} by {}",
                fmt_time(s.created_at),
                or_dash(s.created_by.as_deref())
            ),
        ),
        (
            "Updated:",
            format!(
                "{} by {}",
                fmt_time(s.last_updated_at),
                or_dash(s.last_updated_by.as_deref())
            ),
        ),
    ];
    if let Some(at) = s.revoked_at {
        rows.push((
            "Revoked:",
            format!("{} by {}", fmt_time(at), or_dash(s.revoked_by.as_deref())),
        ));
    }
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

/// Bindings as a table; `secret_name` maps a secret id to its name.
pub fn bindings_table(
    bindings: &[SecretBinding],
    with_workspace: bool,
    secret_name: impl Fn(&str) -> String,
) -> Table {
    let mut headers = vec!["BINDING ID", "NAME", "SECRET", "RESOURCE", "CREATED", "BY"];
    if with_workspace {
        headers.insert(0, "WORKSPACE");
    }
    let mut t = table(&headers);
    for b in bindings {
        let mut row = vec![
            b.binding_id.clone(),
            b.binding_name.clone(),
            match &b.value_field {
                // A field binding injects one field: `azure[api_key]`.
                Some(f) => format!("{}[{f}]", secret_name(&b.secret_id)),
                None => secret_name(&b.secret_id),
            },
            match b.service_accounts.as_slice() {
                [] => format!("{}/{}", b.resource_type, b.resource_id),
                sas => format!(
                    "{}/{} (sa: {})",
                    b.resource_type,
                    b.resource_id,
                    sas.join(",")
                ),
            },
            fmt_age(b.created_at),
            or_dash(b.created_by.as_deref()).into(),
        ];
        if with_workspace {
            row.insert(0, b.workspace.clone());
        }
        t.add_row(row);
    }
    t
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(951_825_600_000), "2000-02-29 12:00:00 UTC");
        assert_eq!(fmt_time(1_767_225_599_000), "2025-12-31 23:59:59 UTC");
    }
}
