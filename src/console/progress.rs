//! The running statement on stderr: a spinner with rows written, and for model functions rows
//! done, rate and time left; for a training run, steps, loss and time left.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use vitrine::engine::ModelProgressUpdate;
use vitrine::EngineSession;

/// A spinner on stderr showing the running statement (hidden when stderr is not a terminal):
/// rows written, and for model functions rows done, rate and time left.
pub fn statement_spinner(session: &EngineSession) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {wide_msg}").expect("template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    let bar = spinner.clone();
    session.on_rows_written(Arc::new(move |rows| {
        bar.set_message(format!("{rows} rows written"))
    }));
    let bar = spinner.clone();
    let rate = Mutex::new(RateMeter::default());
    session.on_model_progress(Arc::new(move |update: &ModelProgressUpdate| {
        let line = rate.lock().expect("rate lock").line(update);
        bar.set_message(line);
    }));
    spinner
}

/// Turns model progress updates into `clip_image_embed [####----] 1200/≈44424 rows · 41/s · 17m left`.
#[derive(Default)]
struct RateMeter {
    started: Option<(Instant, &'static str)>,
}

impl RateMeter {
    fn line(&mut self, update: &ModelProgressUpdate) -> String {
        let now = Instant::now();
        let started = match self.started {
            Some((at, function)) if function == update.function => at,
            _ => {
                self.started = Some((now, update.function));
                now
            }
        };
        let seconds = now.duration_since(started).as_secs_f64();
        let rate = if seconds > 0.5 {
            update.rows as f64 / seconds
        } else {
            0.0
        };
        let mut line = format!("{} ", update.function);
        let unit = if update.detail.is_some() {
            "steps"
        } else {
            "rows"
        };
        match update.expected_rows.filter(|&n| n >= update.rows && n > 0) {
            Some(total) => {
                let filled = (20 * update.rows / total) as usize;
                line.push_str(&format!(
                    "[{}{}] {}/≈{} {unit}",
                    "#".repeat(filled),
                    "-".repeat(20 - filled),
                    update.rows,
                    total
                ));
                if rate > 0.0 {
                    let left = (total - update.rows) as f64 / rate;
                    line.push_str(&format!(" · {rate:.1}/s · ≈{} left", short_duration(left)));
                }
            }
            None => {
                line.push_str(&format!("{} {unit}", update.rows));
                if rate > 0.0 {
                    line.push_str(&format!(" · {rate:.1}/s"));
                }
            }
        }
        if let Some(detail) = &update.detail {
            line.push_str(&format!(" · {detail}"));
        }
        line
    }
}

fn short_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
