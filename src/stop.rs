//! Stopping a run on a signal: which signals pause it, what a repeated one
//! means, and how long the pause may take. Pure logic: the CLI listens for
//! the signals and exits; the engine honours the grace period.
//!
//! SIGINT (Ctrl-C), SIGTERM (a scheduler's stop: `scancel`, `scontrol
//! requeue`, a time limit, a preemption, a pod's deletion) and SIGHUP (a
//! closed terminal) all pause a run: no new request starts, the requests in
//! flight get [`StopTimes::grace`] to finish and are then abandoned (redone
//! on resume), progress is saved, and the process exits within
//! [`StopTimes::timeout`] of the signal.

use crate::secs::parse_in_range;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

/// A signal that pauses a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT: Ctrl-C at a terminal.
    Interrupt,
    /// SIGTERM: a scheduler or an engine stopping the process.
    Terminate,
    /// SIGHUP: the terminal went away.
    Hangup,
}

impl StopSignal {
    /// The signal's name (`SIGTERM`).
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Hangup => "SIGHUP",
        }
    }

    /// The signal's number (the shell's exit status of a process it stops
    /// is 128 + this).
    pub fn number(self) -> i32 {
        match self {
            StopSignal::Interrupt => 2,
            StopSignal::Terminate => 15,
            StopSignal::Hangup => 1,
        }
    }
}

/// What to do with a signal that arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The first signal: pause the run.
    Pause,
    /// The same stop delivered twice (a job engine signals every process of
    /// a task, and the task's script forwards it too): nothing more to do.
    Ignore,
    /// Asked again: exit now (the files on disk are consistent).
    ExitNow,
}

/// A repeat of the first SIGTERM or SIGHUP within this long is the same stop
/// delivered twice, not a user insisting.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(2);

/// Decides what each stop signal means given the ones before it.
#[derive(Debug, Default)]
pub struct StopPolicy {
    first: Option<(StopSignal, Instant)>,
}

impl StopPolicy {
    /// The action for `signal` arriving at `now`: the first pauses; then a
    /// Ctrl-C exits now, as does a SIGTERM or SIGHUP unless it repeats the
    /// first signal within [`REPEAT_WINDOW`].
    pub fn on_signal(&mut self, signal: StopSignal, now: Instant) -> Action {
        let Some((first, at)) = self.first else {
            self.first = Some((signal, now));
            return Action::Pause;
        };
        let duplicate = signal != StopSignal::Interrupt
            && signal == first
            && now.saturating_duration_since(at) < REPEAT_WINDOW;
        if duplicate {
            Action::Ignore
        } else {
            Action::ExitNow
        }
    }

    /// The signal that paused the run, if one did.
    pub fn first(&self) -> Option<StopSignal> {
        self.first.map(|(s, _)| s)
    }
}

/// How long a pause may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopTimes {
    /// Requests in flight may finish for this long after the signal; then
    /// they are abandoned.
    pub grace: Duration,
    /// The process exits this long after the signal at the latest, whatever
    /// is left (MLflow updates not yet sent wait for `w2c sync`).
    pub timeout: Duration,
}

/// Sets [`StopTimes::grace`], seconds.
pub const GRACE_VAR: &str = "W2C_STOP_GRACE_SECS";
/// Sets [`StopTimes::timeout`], seconds.
pub const TIMEOUT_VAR: &str = "W2C_STOP_TIMEOUT_SECS";
/// Default of [`GRACE_VAR`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Default of [`TIMEOUT_VAR`]: below the usual grace periods of job engines
/// (Kubernetes' `terminationGracePeriodSeconds` and Slurm's `KillWait` are
/// 30 s unless set).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25);
/// Accepted range of [`GRACE_VAR`], seconds.
pub const GRACE_RANGE: RangeInclusive<f64> = 0.0..=3600.0;
/// Accepted range of [`TIMEOUT_VAR`], seconds.
pub const TIMEOUT_RANGE: RangeInclusive<f64> = 0.1..=86_400.0;

impl Default for StopTimes {
    fn default() -> Self {
        StopTimes {
            grace: DEFAULT_GRACE,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl StopTimes {
    /// The times the environment sets (`env` looks a variable up), else the
    /// defaults; the timeout must exceed the grace period.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<StopTimes, String> {
        let read = |var: &str, default: Duration, range: RangeInclusive<f64>| match env(var) {
            Some(v) if !v.trim().is_empty() => parse_in_range(var, &v, range),
            _ => Ok(default),
        };
        let times = StopTimes {
            grace: read(GRACE_VAR, DEFAULT_GRACE, GRACE_RANGE)?,
            timeout: read(TIMEOUT_VAR, DEFAULT_TIMEOUT, TIMEOUT_RANGE)?,
        };
        if times.timeout <= times.grace {
            return Err(format!(
                "{TIMEOUT_VAR} ({} s) must be more than {GRACE_VAR} ({} s): requests in flight get the grace period, then progress is saved before the timeout",
                times.timeout.as_secs_f64(),
                times.grace.as_secs_f64()
            ));
        }
        Ok(times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_pauses_and_ctrl_c_again_exits_now() {
        let t0 = Instant::now();
        let mut p = StopPolicy::default();
        assert_eq!(p.on_signal(StopSignal::Interrupt, t0), Action::Pause);
        assert_eq!(p.first(), Some(StopSignal::Interrupt));
        // A second Ctrl-C, however soon, is the user insisting.
        assert_eq!(
            p.on_signal(StopSignal::Interrupt, t0 + Duration::from_millis(100)),
            Action::ExitNow
        );
    }

    #[test]
    fn a_repeated_sigterm_is_the_same_stop_at_first_then_an_insistence() {
        let t0 = Instant::now();
        for sig in [StopSignal::Terminate, StopSignal::Hangup] {
            let mut p = StopPolicy::default();
            assert_eq!(p.on_signal(sig, t0), Action::Pause);
            // The job engine and the task's script both deliver it.
            assert_eq!(
                p.on_signal(sig, t0 + Duration::from_millis(50)),
                Action::Ignore
            );
            assert_eq!(p.on_signal(sig, t0 + REPEAT_WINDOW), Action::ExitNow);
        }
        // Another signal than the first, or Ctrl-C, exits now.
        let mut p = StopPolicy::default();
        p.on_signal(StopSignal::Terminate, t0);
        assert_eq!(p.on_signal(StopSignal::Hangup, t0), Action::ExitNow);
        let mut p = StopPolicy::default();
        p.on_signal(StopSignal::Terminate, t0);
        assert_eq!(p.on_signal(StopSignal::Interrupt, t0), Action::ExitNow);
        assert_eq!(p.first(), Some(StopSignal::Terminate));
    }

    /// Looks variables up in `pairs`.
    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn stop_times_come_from_the_environment_checked() {
        assert_eq!(StopTimes::from_env(&env(&[])), Ok(StopTimes::default()));
        assert_eq!(
            StopTimes::from_env(&env(&[(GRACE_VAR, "2"), (TIMEOUT_VAR, "4.5")])),
            Ok(StopTimes {
                grace: Duration::from_secs(2),
                timeout: Duration::from_millis(4500),
            })
        );
        assert_eq!(
            StopTimes::from_env(&env(&[(GRACE_VAR, " ")])),
            Ok(StopTimes::default())
        );
        for (pairs, named) in [
            (&[(GRACE_VAR, "-1")][..], GRACE_VAR),
            (&[(GRACE_VAR, "inf")][..], GRACE_VAR),
            (&[(TIMEOUT_VAR, "0")][..], TIMEOUT_VAR),
            (&[(TIMEOUT_VAR, "soon")][..], TIMEOUT_VAR),
            // The default timeout is shorter than this grace period.
            (&[(GRACE_VAR, "30")][..], TIMEOUT_VAR),
        ] {
            let err = StopTimes::from_env(&env(pairs)).unwrap_err();
            assert!(err.contains(named), "{pairs:?}: {err}");
        }
    }
}
