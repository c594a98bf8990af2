//! The PNG chart: every target ratio as a bar beside its target, the
//! shutdown latencies beside the 1 ms target, and the `scale` workload's
//! rates, latencies and memory against the number of connections, drawn
//! with plotters.
//!
//! Text needs a TrueType font, read at run time: `$SOCKETSERVER_BENCH_FONT`,
//! DejaVu Sans where distributions put it (Debian: `apt-get install -y
//! fonts-dejavu-core`), or what `fc-match` names.

use std::path::Path;
use std::process::Command;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::report::{Check, Target, Verdict};

/// Overrides the font file.
pub const FONT_VAR: &str = "SOCKETSERVER_BENCH_FONT";
const FONT: &str = "sans-serif";
const WIDTH: u32 = 1400;
const ROW: u32 = 30;
/// Room left of each panel for the labels.
const LABELS: u32 = 520;
const MET: RGBColor = RGBColor(70, 160, 90);
const MISSED: RGBColor = RGBColor(215, 70, 55);
const NEUTRAL: RGBColor = RGBColor(150, 150, 150);
const FRAMEWORK: RGBColor = RGBColor(60, 110, 190);
const FLOOR: RGBColor = RGBColor(150, 190, 230);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Loads a font for the chart's text.
///
/// # Errors
/// No font was found or it could not be read: what to install.
pub fn load_font() -> Result<(), String> {
    let mut candidates: Vec<String> = std::env::var(FONT_VAR).into_iter().collect();
    candidates.extend(
        [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        ]
        .map(String::from),
    );
    if let Ok(out) = Command::new("fc-match")
        .args(["-f", "%{file}", "sans-serif:fontformat=TrueType"])
        .output()
    {
        candidates.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let bytes = candidates
        .iter()
        .find_map(|path| std::fs::read(path).ok())
        .ok_or_else(|| {
            format!(
                "the chart needs a TrueType font: apt-get install -y fonts-dejavu-core, \
                 or set {FONT_VAR}=/path/to/font.ttf"
            )
        })?;
    register_font(FONT, FontStyle::Normal, Vec::leak(bytes))
        .map_err(|_| "the font file could not be parsed".to_string())
}

/// What a scale panel shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Round trips per second.
    Rate,
    /// 99th percentile round trip, ms.
    P99,
    /// The server's resident set, MiB.
    Resident,
}

impl Metric {
    fn caption(self) -> &'static str {
        match self {
            Metric::Rate => "scale: round trips/s vs connections",
            Metric::P99 => "scale: p99 round trip (ms) vs connections",
            Metric::Resident => "scale: server resident MiB vs connections",
        }
    }
}

/// One server's line in a scale panel: points of (connections, median,
/// smallest, largest over rounds).
#[derive(Clone, Debug)]
pub struct Curve {
    /// The panel it belongs to.
    pub metric: Metric,
    /// The server, as the legend names it.
    pub server: String,
    /// Its points, by connection count.
    pub points: Vec<(f64, f64, f64, f64)>,
}

const SCALE_HEIGHT: u32 = 480;
const PALETTE: [RGBColor; 6] = [
    RGBColor(60, 110, 190),
    RGBColor(230, 140, 30),
    RGBColor(70, 160, 90),
    RGBColor(150, 80, 170),
    RGBColor(215, 70, 55),
    RGBColor(110, 110, 110),
];

/// Draws the chart of `checks`, `latencies` (label, ms) and the scale
/// `curves` to `path`.
///
/// # Errors
/// Drawing or writing the file failed.
pub fn draw(
    path: &Path,
    title: &str,
    checks: &[&Check],
    latencies: &[(String, f64)],
    curves: &[Curve],
) -> Result<(), String> {
    let ratios = Panel {
        caption: "measured ratio (bar) and the issue's target (black mark); log scale",
        low: 0.3,
        unit: "x",
        reference: (1.0, BLACK.mix(0.4)),
        bars: checks.iter().filter_map(|c| ratio_bar(c)).collect(),
    };
    let shutdown = Panel {
        caption:
            "shutdown() to serve_forever returning: p99 (log scale); red line: the 1 ms target",
        low: 0.001,
        unit: " ms",
        reference: (1.0, MISSED.mix(1.0)),
        bars: latencies.iter().map(latency_bar).collect(),
    };
    let height = |p: &Panel| match p.bars.len() {
        0 => 0,
        n => 110 + ROW * n as u32,
    };
    let (top_h, bottom_h) = (height(&ratios), height(&shutdown));
    let scale_h = if curves.is_empty() { 0 } else { SCALE_HEIGHT };
    let root =
        BitMapBackend::new(path, (WIDTH, top_h + bottom_h + scale_h + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(text)?;
    let (head, rest) = root.split_vertically(40);
    head.draw(&Text::new(
        title.to_string(),
        (15, 12),
        (FONT, 20).into_font().color(&BLACK),
    ))
    .map_err(text)?;
    let (top, rest) = rest.split_vertically(top_h);
    let (bottom, scale) = rest.split_vertically(bottom_h);
    for (panel, area) in [(ratios, top), (shutdown, bottom)] {
        if !panel.bars.is_empty() {
            panel.draw(&root, &area).map_err(text)?;
        }
    }
    if !curves.is_empty() {
        let panels = scale.split_evenly((1, 3));
        for (metric, area) in [Metric::Rate, Metric::P99, Metric::Resident]
            .into_iter()
            .zip(&panels)
        {
            let lines: Vec<&Curve> = curves.iter().filter(|c| c.metric == metric).collect();
            scale_panel(area, metric, &lines).map_err(text)?;
        }
    }
    root.present().map_err(text)
}

/// `123456` as `123k`, `0.25` as `0.25`.
fn short_number(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// One scale panel: a line per server through its medians, each point's
/// range over rounds as an error bar; both axes logarithmic.
fn scale_panel(area: &Area<'_>, metric: Metric, curves: &[&Curve]) -> DrawResult {
    let points = curves.iter().flat_map(|c| &c.points);
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut left, mut right) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, _, lo, hi) in points {
        (low, high) = (low.min(lo), high.max(hi));
        (left, right) = (left.min(x), right.max(x));
    }
    if !low.is_finite() {
        return Ok(());
    }
    let mut chart = ChartBuilder::on(area)
        .caption(metric.caption(), (FONT, 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (left / 1.5..right * 1.5).log_scale(),
            (low / 2.0..high * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .x_labels(6)
        .y_labels(6)
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| short_number(*v))
        .label_style((FONT, 12))
        .draw()?;
    for (i, curve) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().map(|&(x, mid, _, _)| (x, mid)),
                color.stroke_width(2),
            ))?
            .label(curve.server.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(curve.points.iter().map(|&(x, mid, lo, hi)| {
            ErrorBar::new_vertical(x, lo, mid, hi, color.stroke_width(1), 8)
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

fn text(err: impl std::fmt::Display) -> String {
    err.to_string()
}

type DrawResult =
    Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// One horizontal bar.
struct Bar {
    label: String,
    value: f64,
    color: RGBColor,
    /// Written right of the bar.
    note: String,
    /// Drawn as a black mark across the bar.
    target: Option<f64>,
}

/// A target ratio: green met, red missed, grey skipped.
fn ratio_bar(check: &Check) -> Option<Bar> {
    let (Target::AtLeast(target) | Target::AtMost(target)) = check.target else {
        return None;
    };
    let (value, note, color) = match (&check.measured, check.verdict()) {
        (Ok(f), verdict) => {
            let color = if verdict == Verdict::Met { MET } else { MISSED };
            (
                f.value,
                format!("{:.2}x (target {})", f.value, check.target.text()),
                color,
            )
        }
        (Err(reason), _) => (0.0, format!("skipped: {reason}"), NEUTRAL),
    };
    Some(Bar {
        label: format!("{}: {}", check.workload, check.label),
        value,
        color,
        note,
        target: Some(target),
    })
}

/// A shutdown p99, coloured by whose it is.
fn latency_bar((label, value): &(String, f64)) -> Bar {
    let color = if label.starts_with("framework") {
        FRAMEWORK
    } else if label.starts_with("floor") {
        FLOOR
    } else {
        NEUTRAL
    };
    Bar {
        label: format!("shutdown p99: {label}"),
        value: *value,
        color,
        note: crate::report::ms(*value),
        target: None,
    }
}

/// Bars on a log scale from `low`, with a vertical line at `reference`.
struct Panel {
    caption: &'static str,
    low: f64,
    unit: &'static str,
    reference: (f64, RGBAColor),
    bars: Vec<Bar>,
}

impl Panel {
    /// Draws the bars in `area`, their labels left of it (in `root`'s
    /// coordinates).
    fn draw(&self, root: &Area<'_>, area: &Area<'_>) -> DrawResult {
        let n = self.bars.len();
        let top = self
            .bars
            .iter()
            .map(|b| b.value.max(b.target.unwrap_or(0.0)));
        let high = top.fold(10.0, f64::max) * 4.0;
        let low = self.low;
        let mut chart = ChartBuilder::on(area)
            .caption(self.caption, (FONT, 17))
            .margin(10)
            .margin_left(LABELS)
            .margin_right(40)
            .x_label_area_size(35)
            .build_cartesian_2d((low..high).log_scale(), 0.0..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_label_formatter(&|v| format!("{v}{}", self.unit))
            .label_style((FONT, 13))
            .draw()?;
        let (x, color) = self.reference;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, n as f64)],
            color.stroke_width(2),
        )))?;
        let style = |size| (FONT, size).into_font().color(&BLACK);
        for (i, bar) in self.bars.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let (lx, ly) = chart.backend_coord(&(low, y + 0.5));
            root.draw(&Text::new(
                bar.label.clone(),
                (lx - 8, ly),
                style(14).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            let value = bar.value.max(low);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(low, y + 0.2), (value, y + 0.8)],
                bar.color.filled(),
            )))?;
            if let Some(target) = bar.target {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(target, y + 0.05), (target, y + 0.95)],
                    BLACK.stroke_width(3),
                )))?;
            }
            chart.draw_series(std::iter::once(Text::new(
                bar.note.clone(),
                (value.max(bar.target.unwrap_or(low)) * 1.12, y + 0.5),
                style(13).pos(Pos::new(HPos::Left, VPos::Center)),
            )))?;
        }
        Ok(())
    }
}
