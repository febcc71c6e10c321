//! Draws the embedded sweep (`benches/sweep.sh`) as SVG and prints its table
//! of medians as markdown.
//!
//! Reads the CSV the sweep wrote (`ringraft bench --csv` rows with a
//! leading `repeat` column), takes the median over repeats of each
//! (cluster, clients) point, and writes into the output directory:
//! - `sweep-throughput.svg`: writes/s against clients (log scale);
//! - `sweep-latency.svg`: p99 latency against writes/s, one point per
//!   client count, for each cluster (1 node; 3 nodes with early send off
//!   and on, when measured).
//!
//! Run: `cargo run --release --example plot_sweep -- benches/results/sweep.csv benches/results`
//! No network, no fonts needed (SVG text).

use plotters::prelude::*;
use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

/// One measured run.
#[derive(Debug, Clone)]
struct Row {
    /// `embedded`, or `raw-fsync` for the disk's floor measured alongside.
    target: String,
    nodes: u64,
    early: bool,
    clients: u64,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    entries_per_fsync: Option<f64>,
    cpu_us_per_op: Option<f64>,
    fsync_mean_ms: Option<f64>,
}

/// Medians of one point over its repeats.
#[derive(Debug, Clone, Copy)]
struct Point {
    clients: u64,
    runs: usize,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    entries_per_fsync: Option<f64>,
    cpu_us_per_op: Option<f64>,
    fsync_mean_ms: Option<f64>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn read_rows(path: &Path) -> Result<Vec<Row>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty CSV")?.split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("no column {name:?} in {}", path.display()))
    };
    let target = column("target")?;
    let (nodes, early, clients) = (
        column("nodes")?,
        column("send_appends_early")?,
        column("clients")?,
    );
    let (rate, p50, p99) = (column("ops_per_sec")?, column("p50_ms")?, column("p99_ms")?);
    let (per_fsync, cpu) = (column("entries_per_fsync")?, column("cpu_us_per_op")?);
    // Older sweeps have no fsync time.
    let fsync_ms = column("fsync_mean_ms").ok();
    let mut rows = Vec::new();
    for (number, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| -> Result<&str, String> {
            fields
                .get(i)
                .copied()
                .ok_or_else(|| format!("line {}: too few fields", number + 2))
        };
        let number_of = |i: usize| -> Result<f64, Box<dyn Error>> {
            Ok(field(i)?
                .parse::<f64>()
                .map_err(|e| format!("line {}: field {}: {e}", number + 2, header[i]))?)
        };
        let optional = |i: usize| field(i).ok().and_then(|s| s.parse::<f64>().ok());
        rows.push(Row {
            target: field(target)?.to_string(),
            // Empty for the raw fsync loop.
            nodes: field(nodes)?.parse().unwrap_or(0),
            early: field(early)? == "true",
            clients: field(clients)?.parse()?,
            ops_per_sec: number_of(rate)?,
            p50_ms: number_of(p50)?,
            p99_ms: number_of(p99)?,
            entries_per_fsync: optional(per_fsync),
            cpu_us_per_op: optional(cpu),
            fsync_mean_ms: fsync_ms.and_then(optional),
        });
    }
    Ok(rows)
}

/// The series name of a cluster.
fn series_name(nodes: u64, early: bool) -> String {
    match (nodes, early) {
        (1, _) => "1 node".to_string(),
        (n, false) => format!("{n} nodes"),
        (n, true) => format!("{n} nodes, early send"),
    }
}

/// (nodes, early) → points in client order.
fn medians(rows: &[Row]) -> BTreeMap<(u64, bool), Vec<Point>> {
    let mut groups: BTreeMap<(u64, bool, u64), Vec<&Row>> = BTreeMap::new();
    for row in rows {
        groups
            .entry((row.nodes, row.early, row.clients))
            .or_default()
            .push(row);
    }
    let mut series: BTreeMap<(u64, bool), Vec<Point>> = BTreeMap::new();
    for ((nodes, early, clients), runs) in groups {
        let of = |f: fn(&Row) -> f64| median(runs.iter().map(|r| f(r)).collect());
        let of_opt =
            |f: fn(&Row) -> Option<f64>| median(runs.iter().filter_map(|r| f(r)).collect());
        series.entry((nodes, early)).or_default().push(Point {
            clients,
            runs: runs.len(),
            ops_per_sec: of(|r| r.ops_per_sec).unwrap_or(0.0),
            p50_ms: of(|r| r.p50_ms).unwrap_or(0.0),
            p99_ms: of(|r| r.p99_ms).unwrap_or(0.0),
            entries_per_fsync: of_opt(|r| r.entries_per_fsync),
            cpu_us_per_op: of_opt(|r| r.cpu_us_per_op),
            fsync_mean_ms: of_opt(|r| r.fsync_mean_ms),
        });
    }
    series
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn plot_throughput(
    series: &BTreeMap<(u64, bool), Vec<Point>>,
    path: &Path,
) -> Result<(), Box<dyn Error>> {
    let max_clients = series
        .values()
        .flatten()
        .map(|p| p.clients)
        .max()
        .unwrap_or(1) as f64;
    let max_rate = series
        .values()
        .flatten()
        .map(|p| p.ops_per_sec)
        .fold(0.0, f64::max);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ringraft embedded: writes/s vs clients (256 B, fsync on every write)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0.8f64..max_clients * 1.25).log_scale(),
            0f64..(max_rate * 1.1).max(1.0),
        )?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .x_labels(12)
        .x_desc("concurrent clients (log scale)")
        .y_desc("acknowledged writes per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()?;
    for (i, ((nodes, early), points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.clients as f64, p.ops_per_sec))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(series_name(*nodes, *early))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_latency(
    series: &BTreeMap<(u64, bool), Vec<Point>>,
    path: &Path,
) -> Result<(), Box<dyn Error>> {
    let all: Vec<&Point> = series.values().flatten().collect();
    let max_rate = all.iter().map(|p| p.ops_per_sec).fold(0.0, f64::max);
    let max_p99 = all.iter().map(|p| p.p99_ms).fold(0.0, f64::max);
    let min_p99 = all
        .iter()
        .map(|p| p.p99_ms)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let min_p99 = if min_p99.is_finite() { min_p99 } else { 0.01 };
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ringraft embedded: p99 latency vs writes/s (labels: clients)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            0f64..(max_rate * 1.15).max(1.0),
            (min_p99 * 0.7..max_p99 * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .y_labels(12)
        .x_desc("acknowledged writes per second")
        .y_desc("p99 latency, ms (log scale)")
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .y_label_formatter(&|y| {
            if *y < 10.0 {
                format!("{y:.1}")
            } else {
                format!("{y:.0}")
            }
        })
        .draw()?;
    for (i, ((nodes, early), points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line: Vec<(f64, f64)> = points.iter().map(|p| (p.ops_per_sec, p.p99_ms)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(series_name(*nodes, *early))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|p| {
            EmptyElement::at((p.ops_per_sec, p.p99_ms))
                + Circle::new((0, 0), 4, color.filled())
                + Text::new(
                    format!("{}", p.clients),
                    (6, -14),
                    ("sans-serif", 12).into_font().color(&color),
                )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn print_table(series: &BTreeMap<(u64, bool), Vec<Point>>) {
    println!(
        "| cluster | clients | writes/s | p50 ms | p99 ms | entries/fsync | mean fsync ms | CPU µs/op | runs |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for ((nodes, early), points) in series {
        for p in points {
            let opt = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
                series_name(*nodes, *early),
                p.clients,
                p.ops_per_sec,
                p.p50_ms,
                p.p99_ms,
                opt(p.entries_per_fsync, 1),
                opt(p.fsync_mean_ms, 2),
                opt(p.cpu_us_per_op, 1),
                p.runs
            );
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let csv = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "benches/results/sweep.csv".into()),
    );
    let out = PathBuf::from(args.next().unwrap_or_else(|| "benches/results".into()));
    let (rows, raw): (Vec<Row>, Vec<Row>) = read_rows(&csv)?
        .into_iter()
        .partition(|r| r.target == "embedded");
    if rows.is_empty() {
        return Err(format!("{}: no embedded rows", csv.display()).into());
    }
    if !raw.is_empty() {
        let of = |f: fn(&Row) -> f64| median(raw.iter().map(f).collect()).unwrap_or(0.0);
        println!(
            "raw write + fdatasync, 1 thread (median of {} runs): {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, mean fsync {} ms",
            raw.len(),
            of(|r| r.ops_per_sec),
            of(|r| r.p50_ms),
            of(|r| r.p99_ms),
            median(raw.iter().filter_map(|r| r.fsync_mean_ms).collect())
                .map_or("-".to_string(), |v| format!("{v:.2}")),
        );
        println!();
    }
    let series = medians(&rows);
    std::fs::create_dir_all(&out)?;
    plot_throughput(&series, &out.join("sweep-throughput.svg"))?;
    plot_latency(&series, &out.join("sweep-latency.svg"))?;
    print_table(&series);
    eprintln!(
        "wrote {} and {}",
        out.join("sweep-throughput.svg").display(),
        out.join("sweep-latency.svg").display()
    );
    Ok(())
}
