//! What a waiting command shows: a spinner line on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::crd::conditions::READY;
use crate::crd::{DebugSession, Phase};

/// Progress of a wait, on stderr, so that stdout keeps only what scripts read.
pub(crate) struct Progress {
    /// The spinner; `None` when stderr is not a terminal.
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A spinner when stderr is a terminal, plain lines otherwise.
    pub(crate) fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        // indicatif draws nothing on a terminal it cannot control (TERM=dumb): plain lines
        // then, or nothing would show at all.
        Progress {
            bar: bar.filter(|bar| !bar.is_hidden()),
        }
    }

    /// A line that stays (above the spinner on a terminal).
    pub(crate) fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// What the spinner says now; nothing without a terminal (the lines say it).
    pub(crate) fn status(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_owned());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Reports a session's phase as it changes: one line per phase, the spinner follows the
/// message.
#[derive(Default)]
pub(crate) struct Phases {
    last: Option<(Option<Phase>, Option<String>)>,
}

impl Phases {
    /// Shows `session` if its phase or message changed since the last call.
    pub(crate) fn show(&mut self, progress: &Progress, session: &DebugSession) {
        let status = session.status.clone().unwrap_or_default();
        let now = (status.phase, status.message.clone());
        if self.last.as_ref() == Some(&now) {
            return;
        }
        let phase_changed = self.last.as_ref().is_none_or(|(phase, _)| *phase != now.0);
        if phase_changed {
            progress.line(&phase_line(session));
        }
        progress.status(&phase_line(session));
        self.last = Some(now);
    }
}

/// `web-debug-x1: Injecting: waiting for ...`.
pub(crate) fn phase_line(session: &DebugSession) -> String {
    let name = session.metadata.name.as_deref().unwrap_or_default();
    let status = session.status.as_ref();
    let phase = status
        .and_then(|s| s.phase)
        .map_or("(no phase yet)", Phase::as_str);
    match status.and_then(|s| s.message.as_deref()) {
        Some(message) => format!("{name}: {phase}: {message}"),
        None => format!("{name}: {phase}"),
    }
}

/// The reason of the session's Ready condition (which Stalled and Reconciling share).
pub(crate) fn reason(session: &DebugSession) -> Option<String> {
    let status = session.status.as_ref()?;
    status.condition(READY).map(|c| c.reason.clone())
}
