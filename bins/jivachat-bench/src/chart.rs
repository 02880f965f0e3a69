//! `sweep` (fan-out at several offered loads) and the SVG chart of latency against load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use plotters::prelude::*;
use serde_json::Value;

use crate::common;
use crate::fanout::{self, FanoutArgs};

/// What to sweep.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// The fan-out shape; `--rate` is set from `--loads`.
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Offered deliveries per second, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub loads: Vec<f64>,
    /// Runs per load (the chart shows medians).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "fanout-latency.svg")]
    pub svg: PathBuf,
}

/// Redraw a chart from saved results.
#[derive(Debug, Clone, clap::Args)]
pub struct ChartArgs {
    /// JSON lines written by `fanout --rate …` or `sweep` (other lines are skipped).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "fanout-latency.svg")]
    pub svg: PathBuf,
}

/// Runs fan-out at each load; every result goes to `emit`; then draws the chart.
pub async fn sweep(
    args: &SweepArgs,
    emit: impl Fn(&Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if args.loads.is_empty() || args.loads.len() > 50 || args.repeat == 0 || args.repeat > 10 {
        bail!("1–50 loads and 1–10 repeats");
    }
    let mut results = Vec::new();
    for &load in &args.loads {
        for _ in 0..args.repeat {
            let mut run = args.fanout.clone();
            run.load.rate = Some(load / run.load.sockets.max(1) as f64);
            let v = fanout::run(&run).await?;
            emit(&v)?;
            results.push(v);
        }
    }
    draw(&results, &args.svg)
}

/// Redraws from a JSON-lines file.
pub fn chart(args: &ChartArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let results: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    draw(&results, &args.svg)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// (offered deliveries/s, median p50 ms, median p99 ms, median delivered/s) per offered load.
fn points(results: &[Value]) -> Vec<(f64, f64, f64, f64)> {
    let mut by_load: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for v in results {
        if v.get("workload").and_then(Value::as_str) != Some("fanout") {
            continue;
        }
        if let Some(load) = v.get("offered_deliveries_per_s").and_then(Value::as_f64) {
            by_load.entry(load.round() as u64).or_default().push(v);
        }
    }
    let lat = |v: &Value, k: &str| {
        v.get("latency")
            .and_then(|l| l.get(k))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    by_load
        .into_iter()
        .map(|(load, runs)| {
            (
                load as f64,
                median(runs.iter().map(|v| lat(v, "p50_ms")).collect()),
                median(runs.iter().map(|v| lat(v, "p99_ms")).collect()),
                median(
                    runs.iter()
                        .filter_map(|v| v.get("deliveries_per_s").and_then(Value::as_f64))
                        .collect(),
                ),
            )
        })
        .collect()
}

fn draw(results: &[Value], svg: &Path) -> anyhow::Result<()> {
    let pts = points(results);
    if pts.is_empty() {
        bail!("no fan-out results with an offered rate to chart");
    }
    let plot = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the chart: {e}");
    let x_max = pts.iter().map(|p| p.0).fold(0.0, f64::max) * 1.05;
    let y_max = pts.iter().map(|p| p.2.max(p.1)).fold(1.0, f64::max) * 2.0;
    let y_min = pts
        .iter()
        .map(|p| p.1.min(p.2))
        .filter(|y| *y > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        / 2.0;
    let root = SVGBackend::new(svg, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot(&e))?;
    let title = format!(
        "JivaChat fan-out: latency vs offered load (load avg {})",
        common::loadavg()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0f64..x_max, (y_min.max(0.001)..y_max).log_scale())
        .map_err(|e| plot(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered deliveries/s")
        .y_desc("latency, send to receipt (ms, log)")
        .x_label_formatter(&|x| format!("{}k", (x / 1000.0).round()))
        .draw()
        .map_err(|e| plot(&e))?;
    for (name, color, pick) in [("p50", BLUE, 1usize), ("p99", RED, 2usize)] {
        let series: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (p.0, if pick == 1 { p.1 } else { p.2 }.max(0.001)))
            .collect();
        chart
            .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
            .map_err(|e| plot(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                series
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| plot(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot(&e))?;
    root.present().map_err(|e| plot(&e))?;
    Ok(())
}
