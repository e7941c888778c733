//! The security suite's report: each attack test records, where it checks the outcome,
//! what it tried, what should have happened and what did (the API server's message, a
//! status, "admitted"), with whether that was contained. Recording asserts nothing: the
//! tests keep their own asserts. `make e2e` clears the report before the tests and prints
//! it after them (`security-report`, [`render`]).
//!
//! Rows are JSON lines appended to [`report_path`]: every test binary and thread appends
//! to the same file (the tests run inside the cluster's network namespace, on the same
//! filesystem).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Overrides where the report goes.
pub const REPORT_ENV: &str = "SHELLCAR_SECURITY_REPORT";

/// The longest observation kept, in characters: a whole object dump would drown the table.
const OBSERVED_MAX: usize = 400;

/// One attack as a test saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The test binary (`security`, `delegation`, ...).
    pub suite: String,
    pub attack: String,
    pub expected: String,
    pub observed: String,
    /// What the test computed from `observed`: the attack was stopped as expected.
    pub contained: bool,
}

/// `$SHELLCAR_SECURITY_REPORT`, else `security-report.jsonl` in the cargo target directory
/// (`$CARGO_TARGET_DIR`, else the workspace's `target/`).
pub fn report_path() -> PathBuf {
    if let Some(path) = std::env::var_os(REPORT_ENV) {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("security-report.jsonl")
}

/// Appends a row for `attack`. Never fails a test: a report that cannot be written is said
/// on stderr, and the test's own asserts decide.
pub fn record(attack: &str, expected: &str, observed: impl std::fmt::Display, contained: bool) {
    let row = Row {
        suite: suite(),
        attack: attack.to_owned(),
        expected: expected.to_owned(),
        observed: shorten(&observed.to_string()),
        contained,
    };
    if let Err(e) = append(&report_path(), &row) {
        eprintln!("security report: {e:#}");
    }
}

/// One writer at a time within a process; each row is one `write` with O_APPEND, so rows
/// from parallel test binaries do not interleave either.
static WRITER: Mutex<()> = Mutex::new(());

fn append(path: &Path, row: &Row) -> Result<()> {
    let mut line = serde_json::to_string(row)?;
    line.push('\n');
    let _one = WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .with_context(|| format!("appending to {}", path.display()))
}

/// The running test binary's name without cargo's hash (`security-0123abcd` → `security`).
fn suite() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
        _ => stem,
    }
}

/// One line, at most [`OBSERVED_MAX`] characters.
fn shorten(observed: &str) -> String {
    let flat = observed.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(OBSERVED_MAX) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

/// Reads the rows recorded so far; lines that do not parse are errors, naming the line.
pub fn read(text: &str) -> Result<Vec<Row>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| format!("line {} of the report", i + 1))
        })
        .collect()
}

/// The verdict column.
pub fn verdict(row: &Row) -> &'static str {
    if row.contained {
        "contained"
    } else {
        "NOT CONTAINED"
    }
}

/// The table, sorted by suite (then in recording order), `width` columns wide, and a
/// last line counting the verdicts.
pub fn render(rows: &[Row], width: u16) -> String {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| a.suite.cmp(&b.suite));
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(["suite", "attack", "expected", "what happened", "verdict"]);
    for row in sorted {
        table.add_row([
            row.suite.as_str(),
            &row.attack,
            &row.expected,
            &row.observed,
            verdict(row),
        ]);
    }
    let breached = rows.iter().filter(|r| !r.contained).count();
    format!(
        "{table}\n{} attacks: {} contained, {breached} NOT CONTAINED\n",
        rows.len(),
        rows.len() - breached
    )
}

/// What a command that should have been refused did: "admitted" when it succeeded, else
/// what it printed (kubectl's or the CLI's stderr).
pub fn observed(succeeded: bool, stderr: &str) -> &str {
    if succeeded { "admitted" } else { stderr }
}
