//! The SVG chart: one panel per workload variant, a horizontal bar of
//! ops/s per store, the baseline store drawn in black.
//!
//! Each panel has its own scale: workloads differ by orders of magnitude
//! (a durable write against a cached read), and the question a panel
//! answers is how the stores compare on that one workload.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Report, si};
use crate::stores::Result;

const PANEL_WIDTH: u32 = 520;
const COLUMNS: u32 = 3;

/// Draws `report` to `path` as SVG.
pub fn plot(report: &Report, path: &Path) -> Result<()> {
    let mut labels: Vec<&str> = Vec::new();
    for r in &report.results {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    if labels.is_empty() {
        return Err("nothing to plot: no results".into());
    }
    let stores: Vec<&str> = report.stores.iter().map(|s| s.store.as_str()).collect();
    let n_stores = u32::try_from(stores.len())?;
    let panel_height = 70 + 22 * n_stores;
    let n_labels = u32::try_from(labels.len())?;
    let rows = n_labels.div_ceil(COLUMNS);
    let size = (COLUMNS * PANEL_WIDTH, 50 + rows * panel_height);

    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (title, body) = root.split_vertically(50);
    title
        .titled(
            &format!(
                "pydb-bench: ops/s, {} keys of {} B + {} B values (baseline {} in black)",
                report.params.num,
                report.params.key_size,
                report.params.value_size,
                report.baseline
            ),
            ("sans-serif", 20),
        )
        .map_err(err)?;
    let panels = body.split_evenly((usize::try_from(rows)?, usize::try_from(COLUMNS)?));

    // Segment 0 is drawn at the bottom; list the first store at the top.
    // The axis also asks for labels of positions past the last segment,
    // hence the checked subtraction.
    let row_of = |i: usize| stores.len().checked_sub(i + 1);
    for (panel, label) in panels.iter().zip(&labels) {
        // (position on the axis, store index, ops/s)
        let bars: Vec<(usize, usize, f64)> = stores
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                report
                    .results
                    .iter()
                    .find(|r| r.label == *label && r.store == *s)
                    .zip(row_of(i))
                    .map(|(r, pos)| (pos, i, r.ops_per_sec))
            })
            .collect();
        let max = bars
            .iter()
            .map(|(_, _, v)| *v)
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.25;
        let mut chart = ChartBuilder::on(panel)
            .caption(*label, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..max, (0..stores.len()).into_segmented())
            .map_err(err)?;
        let name_of = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => stores
                .get(row_of(*i).unwrap_or(usize::MAX))
                .map_or_else(String::new, |s| (*s).to_string()),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(stores.len())
            .y_label_formatter(&name_of)
            .x_labels(4)
            .x_label_formatter(&|x| si(*x))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(bars.iter().map(|&(i, store, v)| {
                let color = if stores.get(store) == Some(&report.baseline.as_str()) {
                    BLACK.to_rgba()
                } else {
                    Palette99::pick(store).to_rgba()
                };
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (v, SegmentValue::Exact(i + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(3, 3, 0, 0);
                bar
            }))
            .map_err(err)?;
        chart
            .draw_series(bars.iter().map(|&(i, _, v)| {
                Text::new(
                    si(v),
                    (v, SegmentValue::CenterOf(i)),
                    ("sans-serif", 12).into_font(),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// plotters' errors borrow the backend's error type; keep their message.
fn err<E: std::error::Error>(e: E) -> crate::stores::Error {
    e.to_string().into()
}
