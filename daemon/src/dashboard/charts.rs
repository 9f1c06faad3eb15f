//! The dashboard's charts, drawn here as SVG: stacked bars over time, a gridline scale with
//! its unit, a label under every few bars and a tooltip (`<title>`) on each. No script and no
//! library: the browser shows the file as an image.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, DurationRound as _, Utc};

use crate::store::{
    totals::{SalesTotal, TrafficTotal},
    usage::Period,
};
use crate::voucher_sheet::escape;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 40.0;
/// The legend's colour square, the space between it and its name, and between two entries
/// (px).
const LEGEND_SWATCH: f64 = 10.0;
const LEGEND_NAME_GAP: f64 = 4.0;
const LEGEND_GAP: f64 = 18.0;
/// A character of a name at 11 px, a little wide so that no name runs into the next entry.
const LEGEND_CHAR_WIDTH: f64 = 7.0;
/// Gridlines above the baseline.
const GRIDLINES: u32 = 4;
/// Most bar labels along the bottom; the others are left out so they do not overlap.
const MAX_LABELS: usize = 12;

const DOWN_COLOUR: &str = "#2f6fb3";
const UP_COLOUR: &str = "#e08a2c";
const SALES_COLOUR: &str = "#3a9a5b";

fn length(by: Period) -> Duration {
    match by {
        Period::Hour => Duration::hours(1),
        Period::Day => Duration::days(1),
    }
}

/// The start of the first period of a chart that reaches `days` back from `now` and ends
/// with the period `now` is in.
#[must_use]
pub fn first_period(now: DateTime<Utc>, days: u32, by: Period) -> DateTime<Utc> {
    let periods = match by {
        Period::Hour => i64::from(days) * 24,
        Period::Day => i64::from(days),
    };
    let start = now.duration_trunc(length(by)).unwrap_or(now);
    start - length(by) * i32::try_from(periods - 1).unwrap_or(0)
}

/// The starts of every period from `since` to the one `now` is in.
fn periods(since: DateTime<Utc>, now: DateTime<Utc>, by: Period) -> Vec<DateTime<Utc>> {
    let mut starts = Vec::new();
    let mut start = since;
    while start <= now {
        starts.push(start);
        start += length(by);
    }
    starts
}

/// Bytes in the largest unit that keeps a number of at least 1: "1.5 GB".
#[must_use]
pub fn bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = value;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn label(start: DateTime<Utc>, by: Period) -> String {
    match by {
        Period::Hour => start.format("%H:00").to_string(),
        Period::Day => start.format("%m-%d").to_string(),
    }
}

/// Every client's traffic from `since` to now, down and up stacked, one bar a period.
#[must_use]
pub fn traffic(
    totals: &[TrafficTotal],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    by: Period,
) -> String {
    let starts = periods(since, now, by);
    let (mut down, mut up) = (vec![0.0; starts.len()], vec![0.0; starts.len()]);
    for total in totals {
        if let Some(at) = starts.iter().position(|start| *start == total.start) {
            // Bytes as f64: exact to 9 PB, far beyond a period's traffic.
            #[expect(clippy::cast_precision_loss, reason = "exact below 2^53 bytes")]
            {
                down[at] = total.down_bytes as f64;
                up[at] = total.up_bytes as f64;
            }
        }
    }
    let tips: Vec<String> = starts
        .iter()
        .zip(down.iter().zip(&up))
        .map(|(start, (down, up))| {
            format!(
                "{}: {} down, {} up",
                start.format("%Y-%m-%d %H:%M UTC"),
                bytes(*down),
                bytes(*up)
            )
        })
        .collect();
    let sum: f64 = down.iter().chain(&up).sum();
    let title = format!(
        "Traffic {} {} (UTC): {} in all",
        match by {
            Period::Hour => "by hour",
            Period::Day => "by day",
        },
        since.format("since %Y-%m-%d"),
        bytes(sum)
    );
    Chart {
        title: &title,
        labels: starts.iter().map(|start| label(*start, by)).collect(),
        tips,
        series: vec![
            Series {
                name: "down",
                colour: DOWN_COLOUR,
                values: down,
            },
            Series {
                name: "up",
                colour: UP_COLOUR,
                values: up,
            },
        ],
        scale: bytes,
        whole: false,
    }
    .draw()
}

/// Sessions sold a day from `since` to now, each bar's tooltip with what they brought.
#[must_use]
pub fn sales(totals: &[SalesTotal], since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let starts = periods(since, now, Period::Day);
    let mut counts = vec![0.0; starts.len()];
    let mut tips: Vec<String> = starts
        .iter()
        .map(|start| format!("{}: no sale", start.format("%Y-%m-%d")))
        .collect();
    let mut money = std::collections::BTreeMap::<String, i64>::new();
    let mut sold = 0;
    for total in totals {
        if let Some(at) = starts.iter().position(|start| *start == total.day) {
            #[expect(
                clippy::cast_precision_loss,
                reason = "a day's sales are far below 2^53"
            )]
            {
                counts[at] = total.count as f64;
            }
            sold += total.count;
            let brought: Vec<String> = total
                .totals
                .iter()
                .map(|(currency, price)| format!("{price} {currency}"))
                .collect();
            for (currency, price) in &total.totals {
                *money.entry(currency.clone()).or_default() += price.0;
            }
            tips[at] = format!(
                "{}: {} sold{}",
                total.day.format("%Y-%m-%d"),
                total.count,
                if brought.is_empty() {
                    String::new()
                } else {
                    format!(", {}", brought.join(", "))
                }
            );
        }
    }
    let brought: Vec<String> = money
        .iter()
        .map(|(currency, milli)| format!("{} {currency}", crate::price::Price(*milli)))
        .collect();
    let title = format!(
        "Sessions sold by day {} (UTC): {sold} sold{}",
        since.format("since %Y-%m-%d"),
        if brought.is_empty() {
            String::new()
        } else {
            format!(", {}", brought.join(", "))
        }
    );
    Chart {
        title: &title,
        labels: starts
            .iter()
            .map(|start| label(*start, Period::Day))
            .collect(),
        tips,
        series: vec![Series {
            name: "sessions sold",
            colour: SALES_COLOUR,
            values: counts,
        }],
        scale: |value| format!("{value:.0}"),
        whole: true,
    }
    .draw()
}

/// One kind of bar, stacked on the ones before it.
struct Series {
    name: &'static str,
    colour: &'static str,
    values: Vec<f64>,
}

struct Chart<'a> {
    title: &'a str,
    labels: Vec<String>,
    tips: Vec<String>,
    series: Vec<Series>,
    /// How a value on the scale is written.
    scale: fn(f64) -> String,
    /// Whether the values are counts, so gridlines fall on whole numbers.
    whole: bool,
}

/// The smallest of 1, 2, 5 × 10^k at or above `value`, so the gridlines fall on round numbers.
fn round_up(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|top| *top >= value)
        .unwrap_or(10.0 * power)
}

impl Chart<'_> {
    fn draw(&self) -> String {
        let bars = self.labels.len().max(1);
        let stacked: Vec<f64> = (0..bars)
            .map(|at| {
                self.series
                    .iter()
                    .map(|series| series.values.get(at).copied().unwrap_or(0.0))
                    .sum()
            })
            .collect();
        let mut step = round_up(stacked.iter().copied().fold(0.0, f64::max) / f64::from(GRIDLINES));
        if self.whole {
            // Counts: a gridline on every whole number at least.
            step = step.max(1.0);
        }
        let top = step * f64::from(GRIDLINES);
        let (plot_width, plot_height) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        #[expect(clippy::cast_precision_loss, reason = "a chart has a few hundred bars")]
        let slot = plot_width / bars as f64;
        let y = |value: f64| TOP + plot_height - value / top * plot_height;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\" aria-label=\"{title}\">\n<title>{title}</title>\n<text x=\"{LEFT}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{title}</text>\n",
            title = escape(self.title)
        );
        // Right to left from the plot's edge: each entry is its swatch, its name, and a gap
        // before the entry to its right.
        let mut legend_x = WIDTH - RIGHT + LEGEND_GAP;
        for series in self.series.iter().rev() {
            let name_width =
                LEGEND_CHAR_WIDTH * f64::from(u32::try_from(series.name.len()).unwrap_or(10));
            legend_x -= LEGEND_GAP + LEGEND_SWATCH + LEGEND_NAME_GAP + name_width;
            let _ = writeln!(
                svg,
                "<rect x=\"{legend_x:.1}\" y=\"9\" width=\"{LEGEND_SWATCH}\" height=\"{LEGEND_SWATCH}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"18\">{}</text>",
                series.colour,
                legend_x + LEGEND_SWATCH + LEGEND_NAME_GAP,
                series.name
            );
        }
        for line in 0..=GRIDLINES {
            let value = top * f64::from(line) / f64::from(GRIDLINES);
            let at = y(value);
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                at + 4.0,
                escape(&(self.scale)(value))
            );
        }
        let every = bars.div_ceil(MAX_LABELS);
        for at in 0..bars {
            #[expect(clippy::cast_precision_loss, reason = "a chart has a few hundred bars")]
            let x = LEFT + slot * at as f64;
            let mut base = 0.0;
            let tip = escape(self.tips.get(at).map_or("", String::as_str));
            let _ = write!(svg, "<g><title>{tip}</title>");
            for series in &self.series {
                let value = series.values.get(at).copied().unwrap_or(0.0);
                if value > 0.0 {
                    let _ = write!(
                        svg,
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                        x + slot * 0.1,
                        y(base + value),
                        slot * 0.8,
                        y(base) - y(base + value),
                        series.colour
                    );
                }
                base += value;
            }
            // An invisible bar the full height, so the tooltip shows over empty periods too.
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{TOP}\" width=\"{slot:.1}\" height=\"{plot_height}\" fill=\"transparent\"/></g>"
            );
            if at % every == 0 {
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    x + slot / 2.0,
                    HEIGHT - BOTTOM + 16.0,
                    escape(self.labels.get(at).map_or("", String::as_str))
                );
            }
        }
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>\n</svg>",
            WIDTH - RIGHT,
            y(0.0),
            y(0.0)
        );
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn a_traffic_chart_has_a_bar_per_period_and_its_totals() {
        let now = at("2026-12-05T10:30:00Z");
        let since = first_period(now, 2, Period::Hour);
        assert_eq!(since, at("2026-12-03T11:00:00Z"));
        let totals = [TrafficTotal {
            start: at("2026-12-05T09:00:00Z"),
            up_bytes: 1_000_000,
            down_bytes: 3_000_000,
        }];
        let svg = traffic(&totals, since, now, Period::Hour);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<g>").count(), 48);
        assert!(svg.contains("4.0 MB in all"), "{svg}");
        assert!(svg.contains("2026-12-05 09:00 UTC: 3.0 MB down, 1.0 MB up"));
        assert!(svg.contains(DOWN_COLOUR) && svg.contains(UP_COLOUR));
    }

    #[test]
    fn a_sales_chart_counts_sales_and_sums_money() {
        let now = at("2026-12-05T10:30:00Z");
        let since = first_period(now, 7, Period::Day);
        let totals = [SalesTotal {
            day: at("2026-12-04T00:00:00Z"),
            count: 3,
            totals: [("EUR".to_owned(), crate::price::Price(7_500))].into(),
        }];
        let svg = sales(&totals, since, now);
        assert_eq!(svg.matches("<g>").count(), 7);
        assert!(svg.contains("2026-12-04: 3 sold, 7.50 EUR"), "{svg}");
        assert!(svg.contains(": 3 sold, 7.50 EUR"), "{svg}");
    }

    /// The x of the legend's swatch and of its name, for the entry named `name`.
    fn legend_entry(svg: &str, name: &str) -> (f64, f64) {
        let line = svg
            .lines()
            .find(|line| line.contains("y=\"9\"") && line.contains(&format!(">{name}</text>")))
            .unwrap_or_default();
        let numbers: Vec<f64> = line
            .split("x=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next()?.parse().ok())
            .collect();
        (
            numbers.first().copied().unwrap_or_default(),
            numbers.get(1).copied().unwrap_or_default(),
        )
    }

    #[test]
    fn legend_entries_keep_apart() {
        let now = at("2026-12-05T10:30:00Z");
        let svg = traffic(&[], first_period(now, 1, Period::Hour), now, Period::Hour);
        let (down_swatch, down_name) = legend_entry(&svg, "down");
        let (up_swatch, up_name) = legend_entry(&svg, "up");
        assert!(down_swatch > 0.0 && down_name > down_swatch, "{svg}");
        // "down" is 4 characters of at most LEGEND_CHAR_WIDTH; at least a gap before "up".
        let down_end = down_name + 4.0 * LEGEND_CHAR_WIDTH;
        assert!(up_swatch - down_end >= LEGEND_GAP, "{svg}");
        assert!(up_name + 2.0 * LEGEND_CHAR_WIDTH <= WIDTH - RIGHT, "{svg}");
    }

    #[test]
    fn scales_end_on_round_numbers() {
        assert!((round_up(0.0) - 1.0).abs() < f64::EPSILON);
        assert!((round_up(3.0) - 5.0).abs() < f64::EPSILON);
        assert!((round_up(1_200.0) - 2_000.0).abs() < f64::EPSILON);
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(1_500_000.0), "1.5 MB");
    }
}
