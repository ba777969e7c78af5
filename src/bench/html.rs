//! The report as one self-contained HTML page (`report.html`): the headline, the metrics of both
//! indexes as bars with their 95 % intervals, the difference per kind of query with its interval,
//! the spread of the headline metric's per-query values, the plan's phase-1 criteria and each
//! attribute's confusion matrix; charts are inline SVG drawn by plotters.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::error::{Result, VitrineError};
use crate::quality::extraction::{AttributeQuality, CriterionResult};
use crate::quality::QualityReport;

const BASELINE: RGBColor = RGBColor(120, 144, 156);
const CANDIDATE: RGBColor = RGBColor(230, 126, 34);

fn chart_error(e: impl std::fmt::Display) -> VitrineError {
    VitrineError::Plan(format!("drawing the report's charts: {e}"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Bars of every metric over all queries, baseline and candidate side by side, each with its
/// interval.
fn metric_bars(report: &QualityReport) -> Result<String> {
    let Some(all) = report.kinds.first() else {
        return Ok(String::new());
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let n = all.metrics.len() as f64;
        let top = all
            .metrics
            .iter()
            .map(|m| m.baseline.high.max(m.candidate.high))
            .fold(0.0, f64::max)
            .max(0.05)
            * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Metrics over all queries (95 % intervals)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..n, 0.0..top)
            .map_err(chart_error)?;
        let labels: Vec<String> = all.metrics.iter().map(|m| m.metric.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < labels.len() {
                    labels[i].clone()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(chart_error)?;
        for (i, m) in all.metrics.iter().enumerate() {
            for (offset, interval, colour) in [
                (0.12, &m.baseline, BASELINE),
                (0.52, &m.candidate, CANDIDATE),
            ] {
                let x = i as f64 + offset;
                chart
                    .draw_series([Rectangle::new(
                        [(x, 0.0), (x + 0.36, interval.mean)],
                        colour.filled(),
                    )])
                    .map_err(chart_error)?;
                let centre = x + 0.18;
                chart
                    .draw_series([PathElement::new(
                        vec![(centre, interval.low), (centre, interval.high)],
                        BLACK.stroke_width(2),
                    )])
                    .map_err(chart_error)?;
            }
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// The difference candidate − baseline of the first metric per kind of query, with intervals.
fn kind_deltas(report: &QualityReport) -> Result<String> {
    let rows: Vec<(String, f64, f64, f64)> = report
        .kinds
        .iter()
        .filter_map(|k| {
            let m = k.metrics.first()?;
            let d = &m.difference.difference;
            Some((format!("{} ({})", k.kind, k.queries), d.mean, d.low, d.high))
        })
        .collect();
    if rows.is_empty() {
        return Ok(String::new());
    }
    let metric = report.kinds[0].metrics[0].metric.clone();
    let reach = rows
        .iter()
        .map(|(_, _, low, high)| low.abs().max(high.abs()))
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.1;
    let mut svg = String::new();
    {
        let height = 80 + 28 * rows.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (720, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let n = rows.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{metric}: candidate − baseline per kind of query"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(260)
            .build_cartesian_2d(-reach..reach, 0.0..n)
            .map_err(chart_error)?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len() * 2 + 1)
            .y_label_formatter(&|y| {
                let i = y.floor() as usize;
                if (y - y.floor() - 0.5).abs() < 0.01 && i < names.len() {
                    names[names.len() - 1 - i].clone()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(chart_error)?;
        chart
            .draw_series([PathElement::new(vec![(0.0, 0.0), (0.0, n)], BLACK)])
            .map_err(chart_error)?;
        for (i, (_, mean, low, high)) in rows.iter().enumerate() {
            let y = (rows.len() - 1 - i) as f64 + 0.5;
            let colour = if *low > 0.0 {
                CANDIDATE
            } else if *high < 0.0 {
                BASELINE
            } else {
                RGBColor(160, 160, 160)
            };
            chart
                .draw_series([PathElement::new(
                    vec![(*low, y), (*high, y)],
                    colour.stroke_width(3),
                )])
                .map_err(chart_error)?;
            chart
                .draw_series([Circle::new((*mean, y), 5, colour.filled())])
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Histograms of the first metric's per-query values, baseline and candidate side by side per
/// bin, and of the per-query differences.
fn spread(report: &QualityReport) -> Result<String> {
    let Some(d) = report.distributions.first() else {
        return Ok(String::new());
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let (left, right) = root.split_horizontally(400);
        for (area, caption, series) in [
            (
                &left,
                format!("{}: queries per value", d.metric),
                vec![(&d.baseline, BASELINE), (&d.candidate, CANDIDATE)],
            ),
            (
                &right,
                "candidate − baseline".to_string(),
                vec![(&d.difference, RGBColor(90, 90, 90))],
            ),
        ] {
            let [from, to] = series[0].0.range;
            let bins = series[0].0.histogram.len();
            let width = (to - from) / bins as f64;
            let top = series
                .iter()
                .flat_map(|(h, _)| h.histogram.iter())
                .copied()
                .max()
                .unwrap_or(0)
                .max(1) as f64
                * 1.1;
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(28)
                .y_label_area_size(40)
                .build_cartesian_2d(from..to, 0.0..top)
                .map_err(chart_error)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_label_formatter(&|y| format!("{y:.0}"))
                .draw()
                .map_err(chart_error)?;
            let share = width / series.len() as f64;
            for (i, (values, colour)) in series.iter().enumerate() {
                chart
                    .draw_series(values.histogram.iter().enumerate().map(|(bin, count)| {
                        let x = from + bin as f64 * width + i as f64 * share;
                        Rectangle::new(
                            [(x + share * 0.08, 0.0), (x + share * 0.92, *count as f64)],
                            colour.filled(),
                        )
                    }))
                    .map_err(chart_error)?;
            }
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// The plan's phase-1 criteria, each marked pass or fail.
fn criteria_table(criteria: &[CriterionResult]) -> String {
    let mut out = String::from(
        "<h3>The plan's phase-1 criteria</h3><table><tr><th>criterion</th><th>target</th><th>measured</th><th>result</th></tr>",
    );
    for c in criteria {
        let colour = match c.result.as_str() {
            "PASS" => "#27ae60",
            "FAIL" => "#c0392b",
            _ => "#7f8c8d",
        };
        let measured = c
            .measured_pct
            .map_or_else(|| "-".to_string(), |v| format!("{v:.1}%"));
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{measured}</td><td style=\"color:white;background:{colour}\">{}</td></tr>",
            escape(&c.criterion),
            escape(&c.target),
            c.result
        );
    }
    out.push_str("</table>");
    out
}

/// A confusion matrix as a table shaded by each row's share.
fn confusion_table(attribute: &AttributeQuality) -> String {
    let mut predicted: Vec<&String> = attribute
        .confusion
        .values()
        .flat_map(|row| row.keys())
        .collect();
    predicted.sort();
    predicted.dedup();
    let mut out = String::new();
    let _ = write!(
        out,
        "<h3>{} — accuracy {:.3}, macro-F1 {:.3}, {} products</h3><table class=\"confusion\"><tr><th>true \\ extracted</th>",
        escape(&attribute.attribute),
        attribute.accuracy,
        attribute.macro_f1,
        attribute.products
    );
    for p in &predicted {
        let _ = write!(out, "<th>{}</th>", escape(p));
    }
    out.push_str("</tr>");
    for (truth, row) in &attribute.confusion {
        let total: usize = row.values().sum();
        let _ = write!(out, "<tr><th>{}</th>", escape(truth));
        for p in &predicted {
            let count = row.get(*p).copied().unwrap_or(0);
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let _ = write!(
                out,
                "<td style=\"background: rgba(230, 126, 34, {share:.2})\">{count}</td>"
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// The whole page.
pub fn page(report: &QualityReport, markdown_tables: &str) -> Result<String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Retrieval quality: {} vs {}</title>\
         <style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}\
         .banner{{background:#c0392b;color:white;padding:.8em 1em;font-weight:bold}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.25em .5em;text-align:right}}\
         .legend span{{display:inline-block;width:1em;height:1em;margin:0 .3em 0 1em;vertical-align:middle}}\
         pre{{white-space:pre-wrap}}</style></head><body>",
        escape(&report.baseline),
        escape(&report.candidate)
    );
    let _ = write!(
        out,
        "<h1>Retrieval quality</h1><p class=\"legend\"><span style=\"background:rgb(120,144,156)\"></span>baseline {}\
         <span style=\"background:rgb(230,126,34)\"></span>candidate {}</p>",
        escape(&report.baseline),
        escape(&report.candidate)
    );
    if !report.test_models.is_empty() {
        let _ = write!(
            out,
            "<p class=\"banner\">NOT MEANINGFUL: made for tests (random or scripted weights): {}</p>",
            escape(&report.test_models.join(", "))
        );
    }
    out.push_str(&metric_bars(report)?);
    out.push_str(&kind_deltas(report)?);
    out.push_str(&spread(report)?);
    if let Some(extraction) = &report.extraction {
        let _ = write!(
            out,
            "<h2>Extraction against the ground truth</h2><p>{}: {} products, {} extracted, {} of them failed.</p>",
            escape(&extraction.extracted),
            extraction.products,
            extraction.attempted,
            extraction.failed
        );
        out.push_str(&criteria_table(&extraction.criteria));
        for attribute in &extraction.attributes {
            out.push_str(&confusion_table(attribute));
        }
    }
    let _ = writeln!(
        out,
        "<h2>Every figure</h2><pre>{}</pre></body></html>",
        escape(markdown_tables)
    );
    Ok(out)
}
