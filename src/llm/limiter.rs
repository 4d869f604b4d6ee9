//! Adaptive concurrency (AIMD) and request/token budgets for one provider.
//!
//! The limit starts at the configured ceiling. A 429 halves it (at most once
//! per cooldown, never below 1); every success grows it by `1/limit`, i.e. by
//! about one per round of successful requests, back up to the ceiling. 5xx
//! replies do not change it. Optional requests-per-minute and
//! tokens-per-minute budgets are enforced with `governor`.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Shared limiter state of one provider.
#[derive(Debug)]
pub struct AdaptiveLimiter {
    state: Mutex<State>,
    notify: Notify,
    ceiling: usize,
    cooldown: Duration,
    rpm: Option<DefaultDirectRateLimiter>,
    tpm: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
    decreases: u64,
    min_limit: usize,
}

/// A slot held while a request is in flight; released on drop.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<AdaptiveLimiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.limiter.notify.notify_waiters();
    }
}

/// A snapshot for logs and summaries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterStats {
    /// Current limit.
    pub limit: usize,
    /// Requests in flight.
    pub in_flight: usize,
    /// How many times a 429 cut the limit.
    pub decreases: u64,
    /// Lowest limit reached.
    pub min_limit: usize,
}

impl AdaptiveLimiter {
    /// A limiter with a ceiling, a cooldown between decreases, and optional budgets.
    pub fn new(
        ceiling: usize,
        cooldown: Duration,
        rpm: Option<u32>,
        tpm: Option<u32>,
    ) -> Arc<Self> {
        let ceiling = ceiling.max(1);
        let rpm = rpm
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_minute(n)));
        let tpm = tpm
            .and_then(NonZeroU32::new)
            .map(|n| (RateLimiter::direct(Quota::per_minute(n)), n));
        Arc::new(AdaptiveLimiter {
            state: Mutex::new(State {
                limit: ceiling as f64,
                in_flight: 0,
                last_decrease: None,
                decreases: 0,
                min_limit: ceiling,
            }),
            notify: Notify::new(),
            ceiling,
            cooldown,
            rpm,
            tpm,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the budgets and a free slot under the current limit.
    /// `tokens` is the request's estimated token cost for the TPM budget.
    pub async fn acquire(self: &Arc<Self>, tokens: u32) -> Permit {
        if let Some(rpm) = &self.rpm {
            rpm.until_ready().await;
        }
        if let Some((tpm, cap)) = &self.tpm {
            let n = NonZeroU32::new(tokens.clamp(1, cap.get())).unwrap_or(NonZeroU32::MIN);
            // `n` never exceeds the burst size, so this cannot fail.
            let _ = tpm.until_n_ready(n).await;
        }
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                    s.in_flight += 1;
                    return Permit {
                        limiter: self.clone(),
                    };
                }
            }
            notified.await;
        }
    }

    /// A slot under the current limit now, if one is free (budgets are not
    /// consulted: a limiter used this way has none).
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut s = self.lock();
        if (s.in_flight as f64) < s.limit.floor().max(1.0) {
            s.in_flight += 1;
            Some(Permit {
                limiter: self.clone(),
            })
        } else {
            None
        }
    }

    /// The configured ceiling of the limit.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// A request succeeded: additive increase.
    pub fn on_success(&self) {
        let mut s = self.lock();
        let grown = (s.limit + 1.0 / s.limit).min(self.ceiling as f64);
        let crossed = grown.floor() > s.limit.floor();
        s.limit = grown;
        drop(s);
        if crossed {
            self.notify.notify_waiters();
        }
    }

    /// The server said 429: multiplicative decrease, at most once per cooldown.
    pub fn on_rate_limited(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        if s.last_decrease
            .is_some_and(|t| now.duration_since(t) < self.cooldown)
        {
            return;
        }
        s.limit = (s.limit / 2.0).max(1.0);
        s.last_decrease = Some(now);
        s.decreases += 1;
        s.min_limit = s.min_limit.min(s.limit.floor() as usize);
    }

    /// Current state.
    pub fn stats(&self) -> LimiterStats {
        let s = self.lock();
        LimiterStats {
            limit: s.limit.floor() as usize,
            in_flight: s.in_flight,
            decreases: s.decreases,
            min_limit: s.min_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aimd_halves_on_429_with_cooldown_and_grows_back() {
        let l = AdaptiveLimiter::new(64, Duration::from_secs(3600), None, None);
        l.on_rate_limited();
        assert_eq!(l.stats().limit, 32);
        l.on_rate_limited(); // within cooldown: ignored
        assert_eq!(l.stats().limit, 32);
        // One round of successes (about `limit` of them) adds one slot.
        for _ in 0..31 {
            l.on_success();
        }
        assert_eq!(l.stats().limit, 32);
        for _ in 0..2 {
            l.on_success();
        }
        assert_eq!(l.stats().limit, 33);
        for _ in 0..10_000 {
            l.on_success();
        }
        assert_eq!(l.stats().limit, 64);
        assert_eq!(l.stats().decreases, 1);
        assert_eq!(l.stats().min_limit, 32);
    }

    #[test]
    fn never_below_one() {
        let l = AdaptiveLimiter::new(4, Duration::ZERO, None, None);
        for _ in 0..10 {
            l.on_rate_limited();
        }
        assert_eq!(l.stats().limit, 1);
    }

    #[tokio::test]
    async fn permits_respect_the_limit() {
        let l = AdaptiveLimiter::new(2, Duration::ZERO, None, None);
        let a = l.acquire(1).await;
        let _b = l.acquire(1).await;
        assert_eq!(l.stats().in_flight, 2);
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire(1).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("released slot is handed over")
            .unwrap();
        assert_eq!(l.stats().in_flight, 2);
    }
}
