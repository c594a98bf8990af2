//! The results: one section per workload (a markdown table of medians) and
//! the targets of issues 7 and 23, each measured ratio beside its expected one.

use std::fmt::Write as _;

use crate::stats::Ratio;

/// What the issue expects of a figure.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// A ratio of at least this.
    AtLeast(f64),
    /// A latency, in milliseconds, under this.
    BelowMs(f64),
    /// A ratio of at most this (memory, CPU: less is better).
    AtMost(f64),
    /// A figure of at most `max` in `unit` (KiB, connections).
    Most {
        /// The largest value that meets the target.
        max: f64,
        /// The figure's unit, as the table shows it.
        unit: &'static str,
    },
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(min) => value >= min,
            Target::BelowMs(max) => value < max,
            Target::AtMost(max) | Target::Most { max, .. } => value <= max,
        }
    }

    /// The target as the table shows it.
    pub fn text(self) -> String {
        match self {
            Target::AtLeast(min) => format!(">= {min:.2}x"),
            Target::BelowMs(max) => format!("< {max} ms"),
            Target::AtMost(max) => format!("<= {max:.2}x"),
            Target::Most { max, unit } => format!("<= {max} {unit}"),
        }
    }
}

/// One target of the issue and what was measured for it.
#[derive(Clone, Debug)]
pub struct Check {
    /// The workload it belongs to (`conn`, `rr`, ...).
    pub workload: &'static str,
    /// What is compared, e.g. `ThreadingTcpServer / hand-written threads`.
    pub what: String,
    /// The same, short, for the chart.
    pub label: String,
    /// The figure with its spread over rounds, or why it was not measured.
    pub measured: Result<Figure, String>,
    /// What the issue expects.
    pub target: Target,
    /// Whether `--strict` fails the run when this target is missed: for
    /// figures that a loaded machine does not move (memory), not for
    /// timings.
    pub strict: bool,
}

/// A measured ratio or latency.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    /// Median ratio, or the latency in ms.
    pub value: f64,
    /// Smallest and largest per-round ratio, when there are rounds.
    pub spread: Option<(f64, f64)>,
}

impl From<Ratio> for Figure {
    fn from(r: Ratio) -> Self {
        Figure {
            value: r.median,
            spread: Some((r.min, r.max)),
        }
    }
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The figure meets its target.
    Met,
    /// The figure misses its target.
    Missed,
    /// Not measured.
    Skipped,
}

impl Check {
    /// Met, missed or skipped.
    pub fn verdict(&self) -> Verdict {
        match &self.measured {
            Ok(f) if self.target.met(f.value) => Verdict::Met,
            Ok(_) => Verdict::Missed,
            Err(_) => Verdict::Skipped,
        }
    }

    fn measured_text(&self) -> String {
        match (&self.measured, self.target) {
            (Ok(f), Target::AtLeast(_) | Target::AtMost(_)) => match f.spread {
                Some((lo, hi)) => format!("**{:.2}x** ({lo:.2}-{hi:.2})", f.value),
                None => format!("**{:.2}x**", f.value),
            },
            (Ok(f), Target::BelowMs(_)) => format!("**{}**", ms(f.value)),
            (Ok(f), Target::Most { unit, .. }) => {
                // Counts as counts: `0 conns`, not `0.0 conns`.
                let show = |v: f64| {
                    if v.fract() == 0.0 {
                        format!("{v:.0}")
                    } else {
                        num(v)
                    }
                };
                match f.spread {
                    Some((lo, hi)) => {
                        format!("**{} {unit}** ({}-{})", show(f.value), show(lo), show(hi))
                    }
                    None => format!("**{} {unit}**", show(f.value)),
                }
            }
            (Err(reason), _) => format!("skipped: {reason}"),
        }
    }
}

/// Milliseconds with a precision that suits their size.
pub fn ms(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.3} ms")
    } else if value < 100.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.0} ms")
    }
}

/// A number with a precision that suits its size.
pub fn num(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The results of one workload.
#[derive(Clone, Debug, Default)]
pub struct Section {
    /// `conn`, `rr`, ...
    pub workload: &'static str,
    /// A one-line title.
    pub title: String,
    /// What was measured and how.
    pub about: String,
    /// The table's header.
    pub header: Vec<String>,
    /// The table's rows.
    pub rows: Vec<Vec<String>>,
    /// Why the workload or some of its peers were not measured; printed
    /// loudly and listed in the results.
    pub skipped: Vec<String>,
    /// The targets for this workload.
    pub checks: Vec<Check>,
    /// Latencies (label, ms) for the chart's second panel.
    pub latencies: Vec<(String, f64)>,
    /// Further tables after the first: a caption and the table (header,
    /// rows).
    pub tables: Vec<Table>,
    /// Curves for the chart's scale panels.
    pub curves: Vec<crate::chart::Curve>,
}

/// A table with a caption.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// A sentence above it.
    pub caption: String,
    /// Its header.
    pub header: Vec<String>,
    /// Its rows.
    pub rows: Vec<Vec<String>>,
}

impl Section {
    /// A section whose workload could not run at all; its `checks` are
    /// marked skipped for `reason`.
    pub fn skipped(
        workload: &'static str,
        title: &str,
        reason: String,
        mut checks: Vec<Check>,
    ) -> Section {
        for check in &mut checks {
            check.measured = Err(reason.clone());
        }
        Section {
            workload,
            title: title.into(),
            skipped: vec![reason],
            checks,
            ..Section::default()
        }
    }
}

/// The whole report.
pub struct Report {
    /// Context: command, date, machine.
    pub preamble: String,
    /// The workloads, in the order run.
    pub sections: Vec<Section>,
}

impl Report {
    /// Every check of every section.
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.sections.iter().flat_map(|s| &s.checks)
    }

    /// Every skip reason, prefixed with its workload.
    pub fn skips(&self) -> Vec<String> {
        self.sections
            .iter()
            .flat_map(|s| {
                s.skipped
                    .iter()
                    .map(move |r| format!("{}: {r}", s.workload))
            })
            .collect()
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.preamble);
        out.push_str("\n## Targets (issues 7 and 23)\n\n");
        out.push_str(
            "Each ratio is the median over rounds of the ratio measured within a round; \
             the range after it is the smallest and largest of those per-round ratios.\n\n",
        );
        table(
            &mut out,
            &["workload", "comparison", "measured", "expected", "verdict"],
            self.checks().map(|c| {
                let verdict = match c.verdict() {
                    Verdict::Met => "met",
                    Verdict::Missed => "**MISSED**",
                    Verdict::Skipped => "**SKIPPED**",
                };
                vec![
                    format!("`{}`", c.workload),
                    c.what.clone(),
                    c.measured_text(),
                    c.target.text(),
                    verdict.into(),
                ]
            }),
        );
        let skips = self.skips();
        if !skips.is_empty() {
            out.push_str("\n**Not measured in this run:**\n\n");
            for skip in skips {
                let _ = writeln!(out, "- {skip}");
            }
        }
        for section in &self.sections {
            let _ = write!(out, "\n## `{}`: {}\n\n", section.workload, section.title);
            if !section.about.is_empty() {
                let _ = write!(out, "{}\n\n", section.about);
            }
            if !section.rows.is_empty() {
                let header: Vec<&str> = section.header.iter().map(String::as_str).collect();
                table(&mut out, &header, section.rows.iter().cloned());
            }
            for extra in &section.tables {
                let _ = write!(out, "\n{}\n\n", extra.caption);
                let header: Vec<&str> = extra.header.iter().map(String::as_str).collect();
                table(&mut out, &header, extra.rows.iter().cloned());
            }
            for skip in &section.skipped {
                let _ = writeln!(out, "\n**SKIPPED:** {skip}");
            }
        }
        out
    }
}

/// A markdown table; a column whose first cell looks like a figure is
/// right-aligned.
fn table(out: &mut String, header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let align: Vec<&str> = (0..header.len())
        .map(|i| {
            let cell = rows
                .first()
                .and_then(|r| r.get(i))
                .map_or("", String::as_str);
            let figure = cell.starts_with(|c: char| c.is_ascii_digit())
                || cell.starts_with("**")
                || cell.starts_with(">=")
                || cell.starts_with("<=")
                || cell.starts_with('<')
                || cell == "-";
            if figure {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}|", align.join("|"));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: Result<f64, &str>, target: Target) -> Check {
        Check {
            workload: "rr",
            what: "a / b".into(),
            label: "a/b".into(),
            measured: value
                .map(|value| Figure {
                    value,
                    spread: None,
                })
                .map_err(String::from),
            target,
            strict: false,
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            check(Ok(0.95), Target::AtLeast(0.95)).verdict(),
            Verdict::Met
        );
        assert_eq!(
            check(Ok(0.94), Target::AtLeast(0.95)).verdict(),
            Verdict::Missed
        );
        assert_eq!(check(Ok(0.5), Target::BelowMs(1.0)).verdict(), Verdict::Met);
        assert_eq!(
            check(Ok(1.0), Target::BelowMs(1.0)).verdict(),
            Verdict::Missed
        );
        assert_eq!(check(Ok(1.1), Target::AtMost(1.1)).verdict(), Verdict::Met);
        assert_eq!(
            check(Ok(1.2), Target::AtMost(1.1)).verdict(),
            Verdict::Missed
        );
        let none = Target::Most {
            max: 0.0,
            unit: "conns",
        };
        assert_eq!(check(Ok(0.0), none).verdict(), Verdict::Met);
        assert_eq!(check(Ok(1.0), none).verdict(), Verdict::Missed);
        assert_eq!(check(Ok(f64::NAN), none).verdict(), Verdict::Missed);
        assert_eq!(
            check(Err("no root"), Target::AtLeast(0.9)).verdict(),
            Verdict::Skipped
        );
    }

    #[test]
    fn markdown_lists_checks_and_skips() {
        let report = Report {
            preamble: "# Results\n".into(),
            sections: vec![
                Section {
                    workload: "rr",
                    title: "round trips".into(),
                    header: vec!["server".into(), "rr/s".into()],
                    rows: vec![vec!["a".into(), "10".into()]],
                    checks: vec![check(Ok(0.5), Target::AtLeast(1.0))],
                    ..Section::default()
                },
                Section::skipped(
                    "tap",
                    "tap",
                    "needs root".into(),
                    vec![check(Ok(1.0), Target::AtLeast(0.9))],
                ),
            ],
        };
        let md = report.markdown();
        assert!(md.contains("| `rr` | a / b | **0.50x** | >= 1.00x | **MISSED** |"));
        assert!(md.contains("- tap: needs root"));
        assert!(md.contains("| `rr` | a / b | skipped: needs root | >= 0.90x | **SKIPPED** |"));
        assert!(md.contains("| a | 10 |"));
    }
}
