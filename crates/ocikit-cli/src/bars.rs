//! Progress bars (indicatif) drawn from the library's progress events, on stderr, only when
//! stderr is a terminal and neither `-q` nor `--json` was given.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocikit::layout::{Event, Progress};

use crate::output::Output;

/// Bars for one command; dropping it clears them.
pub(crate) struct Bars {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<String, ProgressBar>>>,
    enabled: bool,
}

impl Bars {
    pub(crate) fn new(out: &Output) -> Bars {
        let enabled = !out.quiet && !out.json && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Bars {
            multi,
            bars: Arc::new(Mutex::new(HashMap::new())),
            enabled,
        }
    }

    /// A sink that draws a bar per blob.
    pub(crate) fn progress(&self, verb: &'static str) -> Progress {
        match self.drawer() {
            None => Progress::none(),
            Some(draw) => Progress::new(move |event| draw(verb, event)),
        }
    }

    /// A sink for a copy's events: a bar per blob, labelled with the copy's stage.
    pub(crate) fn transport(&self) -> ocikit::transport::Progress {
        match self.drawer() {
            None => ocikit::transport::Progress::none(),
            Some(draw) => {
                ocikit::transport::Progress::new(move |stage, event| draw(stage.as_str(), event))
            }
        }
    }

    /// What draws one event under a verb, when bars are on.
    #[allow(clippy::type_complexity)]
    fn drawer(&self) -> Option<Arc<dyn Fn(&'static str, &Event) + Send + Sync>> {
        if !self.enabled {
            return None;
        }
        let multi = self.multi.clone();
        let bars = Arc::clone(&self.bars);
        let style = ProgressStyle::with_template(
            "{prefix:>9} {msg:14} [{bar:30}] {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Some(Arc::new(move |verb: &'static str, event: &Event| {
            let Ok(mut bars) = bars.lock() else { return };
            match event {
                Event::Started { digest, size, .. } => {
                    let bar = multi.add(ProgressBar::new(*size));
                    bar.set_style(style.clone());
                    bar.set_prefix(verb);
                    bar.set_message(short(digest.as_str()));
                    bars.insert(digest.to_string(), bar);
                }
                Event::Progress { digest, bytes, .. } => {
                    if let Some(bar) = bars.get(digest.as_str()) {
                        bar.set_position(*bytes);
                    }
                }
                Event::Done { digest, bytes, .. } => {
                    if let Some(bar) = bars.remove(digest.as_str()) {
                        bar.set_position(*bytes);
                        bar.finish();
                    }
                }
                Event::Skipped { digest, .. } => {
                    let _ = multi.println(format!(
                        "{:>9} {} (already there)",
                        "skipped",
                        short(digest.as_str())
                    ));
                }
                _ => {}
            }
        }))
    }
}

impl Bars {
    /// A bar for one piece of work that is not a blob event stream: `total` bytes when they
    /// are known (advanced by the step's progress events), else a spinner with the elapsed time.
    /// Hidden when bars are off.
    pub(crate) fn task(
        &self,
        verb: &'static str,
        message: String,
        total: Option<u64>,
    ) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{prefix:>9} {msg:14} [{bar:30}] {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{prefix:>9} {spinner} {msg} ({elapsed})",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(verb);
        bar.set_message(message);
        let bar = self.multi.add(bar);
        if total.is_none() {
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        bar
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        let _ = self.multi.clear();
    }
}

fn short(digest: &str) -> String {
    crate::output::short_digest(digest).to_string()
}
