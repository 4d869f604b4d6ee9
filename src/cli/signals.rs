//! The signals that pause a run (SIGINT, SIGTERM, SIGHUP; see
//! [`crate::stop`]): the first asks the run to stop, says so and arms the
//! stop timeout; a second one, when it is not the same stop delivered twice,
//! exits at once. A signal the process was started with ignored (`nohup`,
//! a background job of a script) stays ignored.

use crate::engine::Cancel;
use crate::stop::{Action, StopPolicy, StopSignal, StopTimes};
use std::io::Write as _;

/// The exit code of a run stopped by `signal`: 128 + its number, as a shell
/// reports a process the signal ended (130 for Ctrl-C, 143 for SIGTERM,
/// 129 for SIGHUP).
pub(super) fn exit_code(signal: Option<StopSignal>) -> i32 {
    128 + signal.unwrap_or(StopSignal::Interrupt).number()
}

/// The command that continues the run, once its sessions are open (e.g.
/// `` `w2c resume main/0123abcd…` ``): each stop message names it.
pub(super) type ContinueWith = std::sync::Arc<std::sync::OnceLock<String>>;

/// Listens for the stop signals for the rest of the process (inside a Tokio
/// runtime): the first one stops `cancel`.
pub(super) fn pause_on_signals(
    cancel: Cancel,
    times: StopTimes,
    continue_with: ContinueWith,
) -> anyhow::Result<()> {
    let mut signals = listen()?;
    // Known now: once the terminal hangs up it no longer says it is one.
    let on_terminal = terminal_outputs();
    tokio::spawn(async move {
        let mut policy = StopPolicy::default();
        while let Some(signal) = signals.next().await {
            match policy.on_signal(signal, std::time::Instant::now()) {
                Action::Pause => {
                    cancel.stop_for(signal);
                    if signal == StopSignal::Hangup {
                        detach_from_terminal(&on_terminal);
                    }
                    say(&format!(
                        "{}{}",
                        pausing(signal, times),
                        then_continues(&continue_with)
                    ));
                    tokio::spawn(exit_after(times.timeout, signal, continue_with.clone()));
                }
                Action::Ignore => {}
                Action::ExitNow => {
                    say(&format!(
                        "{}: exiting now{}",
                        signal.name(),
                        then_continues(&continue_with)
                    ));
                    // Every checkpoint line is written with one write call,
                    // so the session is consistent on disk even now.
                    std::process::exit(exit_code(policy.first()));
                }
            }
        }
    });
    Ok(())
}

/// What the first signal makes the run do, in one line.
fn pausing(signal: StopSignal, times: StopTimes) -> String {
    let again = match signal {
        StopSignal::Interrupt => "Ctrl-C again to exit now",
        _ => "Ctrl-C (SIGINT) to exit now",
    };
    format!(
        "\n{}: pausing: no new requests; those in flight get {} s to finish ({}), then progress is saved; exit within {} s ({}); {again}",
        signal.name(),
        times.grace.as_secs_f64(),
        crate::stop::GRACE_VAR,
        times.timeout.as_secs_f64(),
        crate::stop::TIMEOUT_VAR,
    )
}

/// `; then <command> continues` once the command is known, else nothing.
fn then_continues(continue_with: &ContinueWith) -> String {
    continue_with
        .get()
        .map(|c| format!("; then {c} continues"))
        .unwrap_or_default()
}

/// Exits with the signal's code once `timeout` has passed.
async fn exit_after(timeout: std::time::Duration, signal: StopSignal, continue_with: ContinueWith) {
    tokio::time::sleep(timeout).await;
    say(&format!(
        "{}: still stopping after {} s ({}): exiting now; the session's files are consistent, and `w2c sync` sends MLflow what it has not received{}",
        signal.name(),
        timeout.as_secs_f64(),
        crate::stop::TIMEOUT_VAR,
        then_continues(&continue_with)
    ));
    std::process::exit(exit_code(Some(signal)));
}

/// Writes a line to stderr, ignoring a closed or hung-up terminal (a pause
/// must not fail on its own message).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A stream of the stop signals the process listens to.
struct Signals {
    #[cfg(unix)]
    streams: Vec<(StopSignal, tokio::signal::unix::Signal)>,
}

#[cfg(unix)]
fn listen() -> anyhow::Result<Signals> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut streams = Vec::new();
    for (stop, kind, number) in [
        (StopSignal::Interrupt, SignalKind::interrupt(), libc::SIGINT),
        (
            StopSignal::Terminate,
            SignalKind::terminate(),
            libc::SIGTERM,
        ),
        (StopSignal::Hangup, SignalKind::hangup(), libc::SIGHUP),
    ] {
        if ignored_at_start(number) {
            continue;
        }
        streams.push((stop, signal(kind)?));
    }
    Ok(Signals { streams })
}

#[cfg(unix)]
impl Signals {
    /// The next signal received (`None` when none is listened to).
    async fn next(&mut self) -> Option<StopSignal> {
        if self.streams.is_empty() {
            return None;
        }
        let waits = self
            .streams
            .iter_mut()
            .map(|(stop, stream)| Box::pin(async move { stream.recv().await.map(|_| *stop) }));
        futures::future::select_all(waits).await.0
    }
}

/// Whether `signal` was ignored when the process started (`nohup` ignores
/// SIGHUP; a script's background job ignores SIGINT): listening to it would
/// undo that.
#[cfg(unix)]
fn ignored_at_start(signal: libc::c_int) -> bool {
    // SAFETY: sigaction with a null new action only reads the current
    // disposition into `old`, a zeroed plain C struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Standard output and error, where they are a terminal.
fn terminal_outputs() -> Vec<i32> {
    use std::io::IsTerminal as _;
    let mut fds = Vec::new();
    if std::io::stdout().is_terminal() {
        fds.push(1);
    }
    if std::io::stderr().is_terminal() {
        fds.push(2);
    }
    fds
}

/// After a hangup the terminal is gone and writing to it fails: standard
/// output and error, where they were that terminal (`fds`), go to
/// /dev/null, so that saving progress and the summary cannot fail on a
/// write.
#[cfg(unix)]
fn detach_from_terminal(fds: &[i32]) {
    use std::os::fd::AsRawFd as _;
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    for &fd in fds {
        // SAFETY: dup2 onto the process's own standard output or error from
        // an open /dev/null; no Rust object owns fd 1 or 2.
        unsafe {
            libc::dup2(null.as_raw_fd(), fd);
        }
    }
}

#[cfg(not(unix))]
fn listen() -> anyhow::Result<Signals> {
    Ok(Signals {})
}

#[cfg(not(unix))]
impl Signals {
    async fn next(&mut self) -> Option<StopSignal> {
        tokio::signal::ctrl_c()
            .await
            .ok()
            .map(|_| StopSignal::Interrupt)
    }
}

#[cfg(not(unix))]
fn detach_from_terminal(_fds: &[i32]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells_for_each_signal() {
        assert_eq!(exit_code(Some(StopSignal::Interrupt)), 130);
        assert_eq!(exit_code(Some(StopSignal::Terminate)), 143);
        assert_eq!(exit_code(Some(StopSignal::Hangup)), 129);
        assert_eq!(exit_code(None), super::super::EXIT_INTERRUPTED);
    }

    #[test]
    fn the_pause_message_names_the_signal_the_times_and_the_way_out() {
        let m = pausing(StopSignal::Terminate, StopTimes::default());
        for part in [
            "SIGTERM: pausing",
            "10 s to finish (W2C_STOP_GRACE_SECS)",
            "exit within 25 s (W2C_STOP_TIMEOUT_SECS)",
            "Ctrl-C (SIGINT) to exit now",
        ] {
            assert!(m.contains(part), "{m}");
        }
    }
}
