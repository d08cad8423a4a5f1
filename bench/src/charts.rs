//! PNG charts of a report, drawn with plotters into a pixel buffer and encoded with
//! `png`. Text uses the DejaVu Sans subset checked in under `bench/fonts/`, so the
//! charts look the same on machines without fonts.
//!
//! - `writes.png`: durable write throughput against concurrent writers, with the raw
//!   SQLite floor as a line;
//! - `delivery.png`: live-delivery latency percentiles against subscribers, docfan's
//!   paths beside the bare broadcast floor;
//! - `fanout.png`: changes/s through the four sinks against the parallelization factor.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Once;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{Case, Report, Scenario};

const SIZE: (u32, u32) = (960, 600);
const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans-subset.ttf");

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 120, 20);
const GREY: RGBColor = RGBColor(90, 90, 90);
const GREEN_: RGBColor = RGBColor(44, 160, 44);

/// Draws every chart the report has data for into `dir`; returns (file, caption) pairs.
pub fn draw_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<(&'static str, &'static str)>> {
    register_font()?;
    let mut drawn = Vec::new();
    if let (Some(writes), Some(floor)) =
        (report.scenario("writes"), report.scenario("floor-sqlite"))
    {
        let caption =
            "Durable write throughput against concurrent writers, with the raw SQLite floor";
        draw(&dir.join("writes.png"), |area| {
            writes_chart(area, writes, floor)
        })?;
        drawn.push(("writes.png", caption));
    }
    let floor = report.scenario("floor-broadcast");
    let docfan: Vec<&Scenario> = ["delivery", "notifications", "edits"]
        .iter()
        .filter_map(|name| report.scenario(name))
        .collect();
    if let Some(floor) = floor
        && !docfan.is_empty()
    {
        let caption =
            "Live delivery latency against subscribers: docfan beside a bare WebSocket broadcast";
        draw(&dir.join("delivery.png"), |area| {
            delivery_chart(area, &docfan, floor)
        })?;
        drawn.push(("delivery.png", caption));
    }
    if let Some(fanout) = report.scenario("fanout") {
        let caption = "Fan-out throughput against the parallelization factor";
        draw(&dir.join("fanout.png"), |area| fanout_chart(area, fanout))?;
        drawn.push(("fanout.png", caption));
    }
    Ok(drawn)
}

fn register_font() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| anyhow::anyhow!("the chart font does not parse"));
    });
    result
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws into an RGB buffer and writes it as a PNG file.
fn draw(path: &Path, chart: impl FnOnce(&Area) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let (w, h) = SIZE;
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        area.fill(&WHITE).map_err(plot_error)?;
        chart(&area)?;
        area.present().map_err(plot_error)?;
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(())
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

fn rate(case: &Case) -> f64 {
    case.throughput.as_ref().map_or(0.0, |t| t.value)
}

/// (parameter, value) of the cases whose label starts with `prefix`.
fn series(
    s: &Scenario,
    prefix: &str,
    param: &str,
    value: impl Fn(&Case) -> Option<f64>,
) -> Vec<(f64, f64)> {
    s.cases
        .iter()
        .filter(|c| c.label.starts_with(prefix))
        .filter_map(|c| Some((c.number(param)?, value(c)?)))
        .collect()
}

fn line(color: RGBColor) -> ShapeStyle {
    color.stroke_width(3)
}

fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], line(color))
}

fn writes_chart(area: &Area, writes: &Scenario, floor: &Scenario) -> anyhow::Result<()> {
    let store = series(writes, "document store", "concurrency", |c| Some(rate(c)));
    let rest = series(writes, "REST", "concurrency", |c| Some(rate(c)));
    let floor_rate = floor.cases.first().map_or(0.0, rate);
    let top = store
        .iter()
        .chain(&rest)
        .map(|p| p.1)
        .fold(floor_rate, f64::max)
        * 1.15;
    let writers: Vec<f64> = store.iter().map(|p| p.0).collect();
    let x_max = writers.iter().copied().fold(1.0, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Durable writes/s against concurrent writers",
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0.8f64..x_max).log_scale().with_key_points(writers),
            0f64..top.max(1.0),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("concurrent writers")
        .y_desc("writes/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 18))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(plot_error)?;
    for (points, color, label) in [
        (store, BLUE_, "document store (group commit)"),
        (rest, ORANGE, "REST POST /documents over loopback"),
    ] {
        chart
            .draw_series(LineSeries::new(points, line(color)).point_size(5))
            .map_err(plot_error)?
            .label(label)
            .legend(legend_line(color));
    }
    chart
        .draw_series(DashedLineSeries::new(
            [(0.8, floor_rate), (x_max, floor_rate)],
            12,
            8,
            line(GREY),
        ))
        .map_err(plot_error)?
        .label(format!(
            "floor: raw SQLite, 1 insert per durable transaction ({floor_rate:.0}/s)"
        ))
        .legend(legend_line(GREY));
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn delivery_chart(area: &Area, docfan: &[&Scenario], floor: &Scenario) -> anyhow::Result<()> {
    // A log axis cannot show zero or less (a frame that beat the HTTP answer).
    let positive = |v: f64| v.max(0.01);
    struct Line {
        label: String,
        color: RGBColor,
        dashed: bool,
        points: Vec<(f64, f64)>,
    }
    let mut lines: Vec<Line> = Vec::new();
    let sources = docfan
        .iter()
        .map(|s| {
            let color = match s.name.as_str() {
                "delivery" => BLUE_,
                "edits" => GREEN_,
                _ => ORANGE,
            };
            (*s, color)
        })
        .chain([(floor, GREY)]);
    for (s, color) in sources {
        let name = match s.name.as_str() {
            "delivery" => "docfan notifier → frame",
            "notifications" => "docfan REST → /ws frame",
            "edits" => "docfan edit → /ws frame",
            _ => "bare broadcast (floor)",
        };
        for (p, dashed) in [("p50", false), ("p99", true)] {
            let points = series(s, "", "subscribers", |c| {
                let l = c.latency_ms.as_ref()?;
                Some(positive(if p == "p50" { l.p50 } else { l.p99 }))
            });
            lines.push(Line {
                label: format!("{name}, {p}"),
                color,
                dashed,
                points,
            });
        }
    }
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let subscribers: Vec<f64> = floor
        .cases
        .iter()
        .filter_map(|c| c.number("subscribers"))
        .collect();
    let x_max = subscribers.iter().copied().fold(1.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Live delivery latency against subscribers",
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0.7f64..x_max).log_scale().with_key_points(subscribers),
            // Headroom above the data for the legend.
            (lo.min(hi) / 2.0..hi.max(lo) * 60.0).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("latency, ms (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .label_style(("sans-serif", 18))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(plot_error)?;
    for Line {
        label,
        color,
        dashed,
        points,
    } in lines
    {
        let series = if dashed {
            chart.draw_series(DashedLineSeries::new(points, 10, 6, line(color)))
        } else {
            chart.draw_series(LineSeries::new(points, line(color)).point_size(4))
        };
        let legend_style = if dashed {
            color.stroke_width(1)
        } else {
            line(color)
        };
        series
            .map_err(plot_error)?
            .label(format!("{label}{}", if dashed { " (dashed)" } else { "" }))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], legend_style));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn fanout_chart(area: &Area, fanout: &Scenario) -> anyhow::Result<()> {
    let points = series(fanout, "drain", "parallelization", |c| Some(rate(c)));
    let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Fan-out: changes/s through the four sinks",
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.5f64..4.5f64, 0f64..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("parallelization factor (partitions handled at once)")
        .y_desc("changes/s")
        .x_labels(9)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 18))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(points, line(BLUE_)).point_size(5))
        .map_err(plot_error)?
        .label("search + notifications + audit + analysis, drained from the change log")
        .legend(legend_line(BLUE_));
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 17))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}
