//! The benchmark's table: samples summarised as median and min–max, comparisons as
//! differences and ratios, each row beside the target and whether it is met.
//! Printed, never asserted.

use std::fmt::Write as _;
use std::time::Duration;

/// Durations measured for one side of a comparison.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, sample: Duration) {
        self.0.push(sample);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted
    }

    /// The median (p50): the middle sample, or the mean of the two middle ones.
    pub fn median(&self) -> Option<Duration> {
        let sorted = self.sorted();
        let n = sorted.len();
        match n {
            0 => None,
            _ if !n.is_multiple_of(2) => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
        }
    }

    pub fn min(&self) -> Option<Duration> {
        self.0.iter().min().copied()
    }

    pub fn max(&self) -> Option<Duration> {
        self.0.iter().max().copied()
    }
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Mebibytes with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1_048_576.0)
}

/// A target of the issue and whether the measurement meets it.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// No target for this row: a number for context.
    Info,
    Met(String),
    NotMet(String),
    /// There is a target, but nothing to judge it by (the measurement is missing).
    Unknown(String),
}

impl Verdict {
    /// `target` judged by `met`.
    pub fn of(target: &str, met: bool) -> Verdict {
        if met {
            Verdict::Met(target.to_owned())
        } else {
            Verdict::NotMet(target.to_owned())
        }
    }
}

/// Width of the measurement column at least; the table's longest measurement widens it.
const WHAT_WIDTH: usize = 58;

#[derive(Clone, Debug)]
enum Line {
    Section(String),
    Row {
        what: String,
        n: Option<usize>,
        value: String,
        spread: String,
        verdict: Verdict,
    },
    Note(String),
}

/// The rows measured so far; each is echoed to stderr as it comes (a long run shows
/// progress, and a run that fails halfway still shows what it measured), and
/// [`Table::print`] prints them all together at the end.
#[derive(Default)]
pub struct Table {
    lines: Vec<Line>,
}

impl Table {
    /// Starts a group of rows.
    pub fn section(&mut self, title: &str) {
        eprintln!("== {title}");
        self.lines.push(Line::Section(title.to_owned()));
    }

    /// A row of durations: median and min–max.
    pub fn samples(&mut self, what: &str, samples: &Samples) {
        let (value, spread) = match (samples.median(), samples.min(), samples.max()) {
            (Some(p50), Some(min), Some(max)) => (
                format!("p50 {}", ms(p50)),
                format!("{}–{}", ms(min), ms(max)),
            ),
            _ => ("no samples".to_owned(), String::new()),
        };
        self.push(Line::Row {
            what: what.to_owned(),
            n: Some(samples.len()),
            value,
            spread,
            verdict: Verdict::Info,
        });
    }

    /// A row of one value, judged by `verdict`.
    pub fn value(&mut self, what: &str, value: impl Into<String>, verdict: Verdict) {
        self.push(Line::Row {
            what: what.to_owned(),
            n: None,
            value: value.into(),
            spread: String::new(),
            verdict,
        });
    }

    /// How `subject` compares with `baseline` at the median: the difference and the ratio,
    /// judged by `verdict` (given both medians).
    pub fn compare(
        &mut self,
        what: &str,
        subject: &Samples,
        baseline: &Samples,
        verdict: impl FnOnce(Duration, Duration) -> Verdict,
    ) {
        let (Some(s), Some(b)) = (subject.median(), baseline.median()) else {
            self.value(what, "no samples", Verdict::Unknown(String::new()));
            return;
        };
        let diff = s.as_secs_f64() - b.as_secs_f64();
        let ratio = s.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON);
        self.value(
            what,
            format!("{:+.1} ms, {ratio:.2}x", diff * 1000.0),
            verdict(s, b),
        );
    }

    /// A line of explanation under the rows.
    pub fn note(&mut self, note: &str) {
        self.push(Line::Note(note.to_owned()));
    }

    fn push(&mut self, line: Line) {
        eprintln!("{}", render(&line, WHAT_WIDTH));
        self.lines.push(line);
    }

    /// The whole table, as printed.
    pub fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .filter_map(|line| match line {
                Line::Row { what, .. } => Some(what.chars().count()),
                _ => None,
            })
            .fold(WHAT_WIDTH, usize::max);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<width$} {:>4}  {:<22} {:<24} {:<34} met",
            "measurement", "n", "value", "min–max", "target"
        );
        for line in &self.lines {
            let _ = writeln!(out, "{}", render(line, width));
        }
        out
    }

    pub fn print(&self) {
        println!("{}", self.render());
    }
}

/// One line, its measurement padded to `width` characters.
fn render(line: &Line, width: usize) -> String {
    match line {
        Line::Section(title) => format!("\n## {title}"),
        Line::Note(note) => format!("   {note}"),
        Line::Row {
            what,
            n,
            value,
            spread,
            verdict,
        } => {
            let n = n.map(|n| n.to_string()).unwrap_or_default();
            let (target, met) = match verdict {
                Verdict::Info => (String::new(), ""),
                Verdict::Met(t) => (t.clone(), "yes"),
                Verdict::NotMet(t) => (t.clone(), "NO"),
                Verdict::Unknown(t) => (t.clone(), "n/a"),
            };
            format!("{what:<width$} {n:>4}  {value:<22} {spread:<24} {target:<34} {met}")
                .trim_end()
                .to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ms: &[u64]) -> Samples {
        let mut s = Samples::default();
        for m in ms {
            s.push(Duration::from_millis(*m));
        }
        s
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(
            samples(&[30, 10, 20]).median(),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            samples(&[40, 10, 30, 20]).median(),
            Some(Duration::from_millis(25))
        );
        assert_eq!(samples(&[]).median(), None);
        assert_eq!(samples(&[5, 9, 7]).min(), Some(Duration::from_millis(5)));
        assert_eq!(samples(&[5, 9, 7]).max(), Some(Duration::from_millis(9)));
    }

    #[test]
    fn a_comparison_prints_difference_ratio_and_verdict() {
        let mut t = Table::default();
        t.compare(
            "copy vs kubectl",
            &samples(&[150, 100, 200]),
            &samples(&[100, 100, 100]),
            |s, b| Verdict::of("<= 1.0x", s <= b),
        );
        let out = t.render();
        assert!(out.contains("+50.0 ms, 1.50x"), "{out}");
        assert!(out.contains("<= 1.0x"), "{out}");
        assert!(out.trim_end().ends_with("NO"), "{out}");
    }

    #[test]
    fn a_long_measurement_widens_its_column_in_every_row() {
        let mut t = Table::default();
        let long = "m".repeat(WHAT_WIDTH + 20);
        t.value("short", "1", Verdict::Info);
        t.value(&long, "2", Verdict::Info);
        let out = t.render();
        // The value follows the measurement, a space, n (4 wide) and two spaces.
        let value_at = long.len() + 7;
        let rows: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{out}");
        for (row, value) in rows.iter().zip(['1', '2']) {
            assert_eq!(row.chars().nth(value_at), Some(value), "{out}");
        }
    }
}
