//! Plots drawn with plotters' SVG backend: axes (a log x axis for a wide CDF), lines split at
//! points that cannot be drawn, and a legend panel. A plot that fails to draw becomes a short
//! note, never a panic.

use std::error::Error;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::report::format::{escape, fmt_axis};
use crate::report::plots::{LegendEntry, Plot, XScale};

/// Size of each plot, pixels.
const PLOT_W: u32 = 760;
const PLOT_H: u32 = 300;
/// Width of the legend panel on the right of each plot.
const LEGEND_W: u32 = 190;
/// Legend labels longer than this are cut with an ellipsis so they stay inside the panel.
const LEGEND_MAX_CHARS: usize = 24;
/// Dash and gap length of dashed lines, pixels.
const DASH: u32 = 6;
const GAP: u32 = 4;
/// Use a log x axis for CDFs when max / min exceeds this (two decades).
const LOG_SPAN: f64 = 100.0;

type PlotResult<T> = Result<T, Box<dyn Error>>;

/// Axis ranges for a plot, from its finite data.
struct Bounds {
    x: Range<f64>,
    y: Range<f64>,
    log_x: bool,
}

/// The figure for `plot`: `None` when it has no finite data, else an inline SVG or a short
/// failure note.
pub(super) fn render_plot(plot: &Plot) -> Option<String> {
    let bounds = bounds(plot)?;
    Some(match draw_plot(plot, &bounds) {
        Ok(svg) => format!("<figure>\n{svg}\n</figure>\n"),
        Err(e) => format!(
            "<p class=\"plot-failed\">plot failed: {}: {}</p>\n",
            escape(&plot.caption),
            escape(&e.to_string())
        ),
    })
}

/// Whether a point can be drawn on this plot's axes.
fn drawable((x, y): (f64, f64), log_x: bool) -> bool {
    x.is_finite() && y.is_finite() && (!log_x || x > 0.0)
}

/// Ranges covering every drawable point, or `None` when there is none.
fn bounds(plot: &Plot) -> Option<Bounds> {
    let all = || plot.lines.iter().flat_map(|l| l.points.iter().copied());
    let (pos_min, pos_max) = min_max(all().filter(|p| drawable(*p, true)).map(|p| p.0));
    let log_x = plot.x_scale == XScale::LogIfWide && pos_min > 0.0 && pos_max / pos_min > LOG_SPAN;
    let drawable_points = || all().filter(move |p| drawable(*p, log_x));
    let (x0, x1) = min_max(drawable_points().map(|p| p.0));
    if x0 > x1 {
        return None; // no drawable point at all
    }
    let (y0, y1) = min_max(drawable_points().map(|p| p.1));
    let (y0, y1) = (y0.min(plot.y_base.0).min(0.0), y1.max(plot.y_base.1));
    let x = if log_x || x1 > x0 {
        x0..x1
    } else {
        x0 - 1.0..x1 + 1.0
    };
    let y = if y1 > y0 {
        y0..y1 + (y1 - y0) * 0.05
    } else {
        y0..y0 + 1.0
    };
    Some(Bounds { x, y, log_x })
}

/// (min, max) of the values, (inf, -inf) when empty.
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Draws the whole figure (caption, chart, legend panel) into an SVG string.
fn draw_plot(plot: &Plot, bounds: &Bounds) -> PlotResult<String> {
    let finite =
        |r: &Range<f64>| r.start.is_finite() && r.end.is_finite() && (r.end - r.start).is_finite();
    if !finite(&bounds.x) || !finite(&bounds.y) {
        return Err("value range too large".into());
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PLOT_W, PLOT_H)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(&plot.caption, ("sans-serif", 16))?;
        let (chart_area, legend_area) = root.split_horizontally(PLOT_W - LEGEND_W);
        if bounds.log_x {
            draw_chart(&chart_area, plot, bounds.x.clone().log_scale(), bounds)?;
        } else {
            draw_chart(&chart_area, plot, bounds.x.clone(), bounds)?;
        }
        draw_legend(&legend_area, &plot.legend)?;
        root.present()?;
    }
    Ok(svg)
}

/// The axes, grid and lines, on a linear or log x axis.
fn draw_chart<X>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    plot: &Plot,
    x_spec: X,
    bounds: &Bounds,
) -> PlotResult<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin_top(4)
        .margin_left(8)
        .margin_right(16)
        .margin_bottom(4)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x_spec, bounds.y.clone())?;
    chart
        .configure_mesh()
        .x_desc(plot.x_desc)
        .y_desc(plot.y_desc)
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|v| fmt_axis(*v))
        .y_label_formatter(&|v| fmt_axis(*v))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(RGBColor(244, 244, 244))
        .draw()?;
    for line in &plot.lines {
        let style = ShapeStyle::from(line.color).stroke_width(if line.dashed { 1 } else { 2 });
        for segment in segments(&line.points, bounds.log_x) {
            if segment.len() == 1 {
                chart.draw_series(std::iter::once(Circle::new(segment[0], 3, style.filled())))?;
            } else if line.dashed {
                chart.draw_series(DashedLineSeries::new(segment, DASH, GAP, style))?;
            } else {
                chart.draw_series(LineSeries::new(segment, style))?;
            }
        }
    }
    Ok(())
}

/// Splits a polyline at points that cannot be drawn (non-finite, or x ≤ 0 on a log axis).
fn segments(points: &[(f64, f64)], log_x: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &p in points {
        if drawable(p, log_x) {
            if let Some(segment) = out.last_mut() {
                segment.push(p);
            }
        } else if out.last().is_some_and(|s| !s.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The legend panel: a short line sample and the (shortened) label per entry, top down, as many
/// as fit.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[LegendEntry],
) -> PlotResult<()> {
    const ROW: i32 = 18;
    const TOP: i32 = 14;
    let (_, height) = area.dim_in_pixel();
    let fit = ((height as i32 - TOP) / ROW).max(1) as usize;
    let shown = if entries.len() > fit {
        fit - 1
    } else {
        entries.len()
    };
    let text = ("sans-serif", 12).into_font().color(&BLACK);
    for (i, entry) in entries.iter().take(shown).enumerate() {
        let y = TOP + ROW * i as i32;
        let style = ShapeStyle::from(entry.color).stroke_width(2);
        if entry.dashed {
            let dash =
                DashedPathElement::new(vec![(4, y), (30, y)], DASH, GAP, style.stroke_width(1));
            area.draw(&dash)?;
        } else {
            area.draw(&PathElement::new(vec![(4, y), (30, y)], style))?;
        }
        area.draw(&Text::new(shorten(&entry.label), (36, y - 7), text.clone()))?;
    }
    if shown < entries.len() {
        let more = format!("… {} more", entries.len() - shown);
        area.draw(&Text::new(more, (36, TOP + ROW * shown as i32 - 7), text))?;
    }
    Ok(())
}

/// Cuts a legend label to [`LEGEND_MAX_CHARS`] characters.
fn shorten(label: &str) -> String {
    if label.chars().count() <= LEGEND_MAX_CHARS {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(LEGEND_MAX_CHARS - 1).collect();
        s.push('…');
        s
    }
}
