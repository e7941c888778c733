use super::*;

fn row(suite: &str, attack: &str, observed: &str, contained: bool) -> Row {
    Row {
        suite: suite.into(),
        attack: attack.into(),
        expected: "refused".into(),
        observed: observed.into(),
        contained,
    }
}

#[test]
fn rows_round_trip_through_json_lines() -> Result<()> {
    let rows = vec![
        row("security", "forged requester", "denied: \"x\"\nnext", true),
        row("delegation", "patch without debug", "admitted", false),
    ];
    let text: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).map(|l| l + "\n"))
        .collect::<Result<_, _>>()?;
    assert_eq!(read(&format!("{text}\n"))?, rows);
    Ok(())
}

#[test]
fn a_line_that_is_not_a_row_is_an_error_naming_it() {
    let err = read("{\"suite\":\"a\"}\n").map(|_| ()).unwrap_err();
    assert!(
        format!("{err:#}").contains("line 1 of the report"),
        "{err:#}"
    );
}

#[test]
fn the_table_shows_each_attack_with_its_verdict_and_counts_them() {
    let rows = [
        row("webhook_repair", "caBundle stripped", "healed in 2s", true),
        row(
            "admission_policy",
            "finalizer removed by a namespace admin",
            "admitted",
            false,
        ),
    ];
    let table = render(&rows, 200);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("attack") && lines[0].contains("what happened"),
        "{table}"
    );
    // Sorted by suite: admission_policy first.
    let first = lines.iter().position(|l| l.contains("finalizer removed"));
    let second = lines.iter().position(|l| l.contains("caBundle stripped"));
    assert!(first < second && first.is_some(), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("admitted") && l.contains("NOT CONTAINED")),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("healed in 2s") && l.contains("| contained")),
        "{table}"
    );
    assert_eq!(
        lines.last(),
        Some(&"2 attacks: 1 contained, 1 NOT CONTAINED"),
        "{table}"
    );
}

#[test]
fn long_cells_wrap_within_the_width() {
    let long = "the API server said something long ".repeat(10);
    let table = render(&[row("security", "a", &long, true)], 100);
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
}

#[test]
fn observations_are_one_line_and_bounded() {
    assert_eq!(
        shorten("denied:\n  spec.requester\tcannot change"),
        "denied: spec.requester cannot change"
    );
    let long = "é".repeat(OBSERVED_MAX + 10);
    let short = shorten(&long);
    assert_eq!(short.chars().count(), OBSERVED_MAX + 1);
    assert!(short.ends_with('…'));
}

#[test]
fn rows_are_appended_to_the_report_file() -> Result<()> {
    let path =
        std::env::temp_dir().join(format!("shellcar-attack-test-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let first = row("orphans", "finalizer stripped", "swept", true);
    let second = row("orphans", "again", "admitted", false);
    append(&path, &first)?;
    append(&path, &second)?;
    let text = std::fs::read_to_string(&path)?;
    std::fs::remove_file(&path)?;
    assert_eq!(read(&text)?, vec![first, second]);
    Ok(())
}
