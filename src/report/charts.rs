//! The HTML report's charts, drawn with plotters' SVG backend (no JavaScript, no fonts
//! from the system: plotters estimates text sizes itself without its `ttf` feature).
//!
//! Past [`PER_TASK_LIMIT`] tasks a chart draws aggregates instead of one mark per task
//! (Nextflow's lesson: per-task timelines of 100,000 tasks are unreadable and heavy):
//! the timeline becomes time bins per worker, each stacked by the statuses of its tasks and
//! shaded by how busy the worker was; the value charts become a median line with a
//! 10th–90th percentile band.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::fmt;
use super::summary::{ChartData, Span};
use crate::record::Status;

/// Up to this many tasks (or points), charts draw one mark per task.
pub const PER_TASK_LIMIT: usize = 2000;

/// Chart width and height in pixels (the page scales them down on narrow screens).
const W: u32 = 900;

const TEXT: RGBColor = RGBColor(0x1f, 0x23, 0x28);
const MUTED: RGBColor = RGBColor(0x65, 0x6d, 0x76);
const GRID: RGBColor = RGBColor(0xea, 0xee, 0xf2);
const ACCENT: RGBColor = RGBColor(0x09, 0x69, 0xda);

/// The colour of a status, shared with the page's CSS.
pub fn status_rgb(s: Status) -> RGBColor {
    match s {
        Status::Ok => RGBColor(0x2d, 0xa4, 0x4e),
        Status::Error => RGBColor(0xcf, 0x22, 0x2e),
        Status::Timeout => RGBColor(0xd4, 0x8a, 0x00),
        Status::Crashed => RGBColor(0x82, 0x50, 0xdf),
        Status::Cancelled => RGBColor(0x8c, 0x95, 0x9f),
        Status::Skipped => RGBColor(0xc8, 0xcf, 0xd6),
    }
}

/// The colour of a status as CSS `#rrggbb`.
pub fn status_css(s: Status) -> String {
    let RGBColor(r, g, b) = status_rgb(s);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&TEXT)
}

fn draw(
    width: u32,
    height: u32,
    f: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        if let Err(e) = f(&root) {
            return format!("<p class=\"muted\">chart not drawn: {}</p>", super::html::esc(&e));
        }
        let _ = root.present();
    }
    svg
}

fn e<E: std::fmt::Debug>(err: E) -> String {
    format!("{err:?}")
}

/// A histogram of task durations: log-spaced bins when they span more than two
/// decades, linear ones otherwise.
pub fn histogram(data: &ChartData) -> Option<String> {
    let d = &data.durations;
    if d.is_empty() {
        return None;
    }
    let (lo, hi) = d.iter().fold((f32::INFINITY, 0f32), |(a, b), x| (a.min(*x), b.max(*x)));
    let log = lo > 0.0 && hi / lo > 100.0;
    let t = |x: f64| if log { x.max(1e-3).log10() } else { x };
    let inv = |x: f64| if log { 10f64.powf(x) } else { x };
    let (a, mut b) = (t(f64::from(lo)), t(f64::from(hi)));
    if b <= a {
        b = a + 1.0;
    }
    const BINS: usize = 40;
    let width = (b - a) / BINS as f64;
    let mut counts = [0u64; BINS];
    for x in d {
        let i = (((t(f64::from(*x)) - a) / width) as usize).min(BINS - 1);
        counts[i] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    Some(draw(W, 300, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(a..b, 0f64..(top as f64 * 1.1).max(1.0))
            .map_err(e)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .bold_line_style(GRID)
            .axis_style(MUTED)
            .x_labels(8)
            .y_labels(6)
            .x_desc(if log { "task duration (log scale)" } else { "task duration" })
            .y_desc("tasks")
            .x_label_formatter(&|x| fmt::ms(inv(*x)))
            .y_label_formatter(&|y| if y.fract() == 0.0 { format!("{y}") } else { String::new() })
            .label_style(font(13))
            .axis_desc_style(font(13))
            .disable_x_mesh()
            .draw()
            .map_err(e)?;
        chart
            .draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| {
                let x0 = a + i as f64 * width;
                Rectangle::new(
                    [(x0 + width * 0.06, 0.0), (x0 + width * 0.94, *c as f64)],
                    ACCENT.filled(),
                )
            }))
            .map_err(e)?;
        Ok(())
    }))
}

/// A timeline of tasks per worker, coloured by status.
pub fn timeline(data: &ChartData) -> Option<String> {
    let spans = &data.spans;
    if spans.is_empty() {
        return None;
    }
    let t0 = spans.iter().map(|s| s.start_us).min()?;
    let end = |s: &Span| (s.start_us - t0) as f64 / 1e6 + f64::from(s.duration_ms) / 1000.0;
    let t1 = spans.iter().map(end).fold(0f64, f64::max).max(1e-3);
    let lanes = spans.iter().map(|s| s.worker).max()? + 1;
    let lane_px = if lanes <= 8 {
        28
    } else if lanes <= 32 {
        14
    } else {
        6
    };
    let height = (lanes * lane_px + 90).clamp(160, 900);
    let per_task = spans.len() <= PER_TASK_LIMIT;
    Some(draw(W, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..t1 * 1.01, -0.5f64..f64::from(lanes) - 0.5)
            .map_err(e)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .bold_line_style(GRID)
            .axis_style(MUTED)
            .disable_y_mesh()
            .x_labels(10)
            .y_labels((lanes as usize).min(16))
            .y_label_formatter(&|y| {
                if y.fract() == 0.0 { format!("{}", *y as i64) } else { String::new() }
            })
            .x_label_formatter(&|x| if *x == 0.0 { "0".into() } else { fmt::ms(x * 1000.0) })
            .x_desc("time since the first task started")
            .y_desc("worker")
            .label_style(font(13))
            .axis_desc_style(font(13))
            .draw()
            .map_err(e)?;
        if per_task {
            chart
                // Failures last, on top of the tasks that followed them.
                .draw_series(
                    spans
                        .iter()
                        .filter(|s| !s.status.is_failure())
                        .chain(spans.iter().filter(|s| s.status.is_failure()))
                        .map(|s| {
                            let x0 = (s.start_us - t0) as f64 / 1e6;
                            // At least a visible sliver: a 2 ms failure in a 10 s run still shows.
                            let x1 = (x0 + f64::from(s.duration_ms) / 1000.0).max(x0 + t1 / 400.0);
                            let y = f64::from(s.worker);
                            Rectangle::new(
                                [(x0, y - 0.35), (x1, y + 0.35)],
                                status_rgb(s.status).filled(),
                            )
                        }),
                )
                .map_err(e)?;
        } else {
            // Aggregates: per worker and time bin, how busy the worker was and how many
            // tasks of each status overlapped the bin. A bin is a stack of its statuses,
            // each as tall as its share (a failure at least 10% of the lane, so that one
            // failure among thousands still shows), shaded by how busy the worker was.
            const BINS: usize = 300;
            let bin = t1 / BINS as f64;
            let cells = BINS * lanes as usize;
            let mut busy = vec![0f64; cells];
            let mut counts = vec![[0u32; 6]; cells];
            for s in spans {
                let x0 = (s.start_us - t0) as f64 / 1e6;
                let x1 = x0 + f64::from(s.duration_ms) / 1000.0;
                let (b0, b1) = ((x0 / bin) as usize, ((x1 / bin) as usize).min(BINS - 1));
                let slot = Status::ALL.iter().position(|x| *x == s.status).unwrap_or(0);
                for b in b0.min(BINS - 1)..=b1 {
                    let lo = (b as f64 * bin).max(x0);
                    let hi = ((b + 1) as f64 * bin).min(x1);
                    let cell = s.worker as usize * BINS + b;
                    busy[cell] += (hi - lo).max(0.0) / bin;
                    counts[cell][slot] += 1;
                }
            }
            let mut rects = Vec::new();
            for cell in 0..cells {
                let n: u32 = counts[cell].iter().sum();
                if n == 0 {
                    continue;
                }
                let (lane, b) = (cell / BINS, cell % BINS);
                let alpha = busy[cell].clamp(0.35, 1.0);
                let x0 = b as f64 * bin;
                let mut shares: Vec<(Status, f64)> = Status::ALL
                    .iter()
                    .zip(counts[cell])
                    .filter(|(_, c)| *c > 0)
                    .map(|(st, c)| {
                        let share = f64::from(c) / f64::from(n);
                        (*st, if st.is_failure() { share.max(0.1) } else { share })
                    })
                    .collect();
                let sum: f64 = shares.iter().map(|x| x.1).sum();
                shares.iter_mut().for_each(|x| x.1 /= sum);
                let mut y = lane as f64 - 0.35;
                for (st, share) in shares {
                    let h = share * 0.7;
                    rects.push(Rectangle::new(
                        [(x0, y), (x0 + bin, y + h)],
                        status_rgb(st).mix(alpha).filled(),
                    ));
                    y += h;
                }
            }
            chart.draw_series(rects).map_err(e)?;
        }
        Ok(())
    }))
}

fn quantile(sorted: &[f32], q: f64) -> f64 {
    let n = sorted.len();
    f64::from(sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
}

/// The result value against one numeric parameter: every point (up to the limit) and
/// the median per parameter value (or per bin, with many values), with a 10th–90th
/// percentile band past the limit.
pub fn value_vs(name: &str, points: &[(f32, f32)]) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let (mut x0, mut x1, mut y0, mut y1) =
        (f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY);
    for (x, y) in points {
        (x0, x1, y0, y1) = (x0.min(*x), x1.max(*x), y0.min(*y), y1.max(*y));
    }
    let (x0, mut x1, mut y0, mut y1) = (f64::from(x0), f64::from(x1), f64::from(y0), f64::from(y1));
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
        y0 -= 1.0;
    }
    let pad = (y1 - y0) * 0.06;
    // Group by exact x (few distinct values) or by 60 bins.
    let mut xs: Vec<f32> = points.iter().map(|p| p.0).collect();
    xs.sort_unstable_by(f32::total_cmp);
    xs.dedup();
    let key = |x: f32| -> f64 {
        if xs.len() <= 100 {
            f64::from(x)
        } else {
            let w = (x1 - x0) / 60.0;
            x0 + ((f64::from(x) - x0) / w).floor().min(59.0) * w + w / 2.0
        }
    };
    let mut groups: std::collections::BTreeMap<i64, (f64, Vec<f32>)> = Default::default();
    for (x, y) in points {
        let k = key(*x);
        groups.entry((k * 1e6) as i64).or_insert_with(|| (k, Vec::new())).1.push(*y);
    }
    let lines: Vec<(f64, f64, f64, f64)> = groups
        .into_values()
        .map(|(k, mut ys)| {
            ys.sort_unstable_by(f32::total_cmp);
            (k, quantile(&ys, 0.5), quantile(&ys, 0.1), quantile(&ys, 0.9))
        })
        .collect();
    let per_task = points.len() <= PER_TASK_LIMIT;
    Some(draw(W, 320, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0 - (x1 - x0) * 0.03..x1 + (x1 - x0) * 0.03, y0 - pad..y1 + pad)
            .map_err(e)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .bold_line_style(GRID)
            .axis_style(MUTED)
            .x_desc(name)
            .y_desc("result value")
            .x_label_formatter(&|x| fmt::num(*x))
            .y_label_formatter(&|y| fmt::num(*y))
            .label_style(font(13))
            .axis_desc_style(font(13))
            .draw()
            .map_err(e)?;
        if per_task {
            chart
                .draw_series(points.iter().map(|(x, y)| {
                    Circle::new((f64::from(*x), f64::from(*y)), 3, ACCENT.mix(0.35).filled())
                }))
                .map_err(e)?;
        } else if lines.len() > 1 {
            let band: Vec<(f64, f64)> = lines
                .iter()
                .map(|l| (l.0, l.3))
                .chain(lines.iter().rev().map(|l| (l.0, l.2)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(band, ACCENT.mix(0.15).filled())))
                .map_err(e)?;
        }
        chart
            .draw_series(LineSeries::new(lines.iter().map(|l| (l.0, l.1)), ACCENT.stroke_width(2)))
            .map_err(e)?;
        chart
            .draw_series(lines.iter().map(|l| Circle::new((l.0, l.1), 4, ACCENT.filled())))
            .map_err(e)?;
        Ok(())
    }))
}
