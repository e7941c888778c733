//! Prints the security suite's table from the rows the e2e tests recorded
//! (`shellcar_e2e::attack`): attack, expected, what happened, verdict. `make e2e` runs it
//! after the tests. Exits 1 when a recorded attack was not contained.
//!
//! `security-report --reset` removes the report instead: `make e2e` runs that before the
//! tests, so each run's table holds that run's rows only.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use shellcar_e2e::attack;

fn main() -> Result<ExitCode> {
    let path = attack::report_path();
    if std::env::args().nth(1).as_deref() == Some("--reset") {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(ExitCode::SUCCESS),
        };
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "security report: no attack recorded ({} is missing)",
                path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let rows = attack::read(&text).with_context(|| format!("reading {}", path.display()))?;
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(160);
    print!("{}", attack::render(&rows, width));
    println!(
        "(from {}; a test that failed before its check recorded no row)",
        path.display()
    );
    Ok(if rows.iter().all(|r| r.contained) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
