//! Several endpoints serving one provider's model (replicas without a load
//! balancer): each with its own adaptive concurrency ([`AdaptiveLimiter`]),
//! requests routed to the least-loaded healthy one, an endpoint taken out
//! after repeated connection failures or 5xx replies and probed back in.
//!
//! Health is a small state machine per endpoint: `healthy` until
//! [`EJECT_AFTER`] attempts in a row fail on the connection or with a 5xx;
//! then `ejected` for a cooldown (1 s, doubling with each ejection in a row
//! up to [`MAX_COOLDOWN`]); then one probe request may go; its success
//! brings the endpoint back, its failure ejects it again. A 429 is not a
//! failure: it halves the endpoint's concurrency (AIMD), as with one
//! endpoint.

use super::limiter::{AdaptiveLimiter, LimiterStats, Permit};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Failures in a row (connection or 5xx) that take an endpoint out.
pub const EJECT_AFTER: u32 = 3;
/// First cooldown of an ejected endpoint.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
/// Longest cooldown.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(30);

/// What an attempt on an endpoint came to, for its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered (a reply, or an error that is not the endpoint's fault).
    Answered,
    /// 429: the endpoint is busy, not broken.
    RateLimited,
    /// No connection, a timeout, or a 5xx.
    Failed,
}

/// Where an endpoint stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Healthy,
    /// Out until `until`; then one probe may go.
    Ejected {
        until: Instant,
    },
    /// A probe is in flight.
    Probing,
}

#[derive(Debug)]
struct Health {
    state: State,
    failures_in_a_row: u32,
    ejections_in_a_row: u32,
    ejections: u64,
    answered: u64,
    failed: u64,
}

/// One endpoint: its URL (no credentials), its limiter and its health.
#[derive(Debug)]
pub struct Endpoint {
    /// Base URL.
    pub url: String,
    /// Its adaptive concurrency.
    pub limiter: Arc<AdaptiveLimiter>,
    health: Mutex<Health>,
}

/// A snapshot of one endpoint for notes and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStats {
    /// Base URL.
    pub url: String,
    /// Attempts it answered.
    pub answered: u64,
    /// Attempts that failed on it (connection, timeout, 5xx).
    pub failed: u64,
    /// Times it was taken out.
    pub ejections: u64,
    /// Whether it is out now.
    pub ejected: bool,
    /// Its limiter.
    pub limiter: LimiterStats,
}

/// The endpoints of one provider.
#[derive(Debug)]
pub struct Pool {
    endpoints: Vec<Endpoint>,
    notify: Notify,
}

/// A slot on one endpoint, held while a request is in flight.
#[derive(Debug)]
pub struct Slot {
    pool: Arc<Pool>,
    /// Index of the endpoint in the pool.
    pub index: usize,
    permit: Option<Permit>,
    probe: bool,
}

impl Slot {
    /// The endpoint this slot is on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.pool.endpoints[self.index]
    }

    /// Records how the attempt went (health and AIMD) and frees the slot.
    pub fn finish(mut self, verdict: Verdict) {
        let pool = self.pool.clone();
        pool.record(self.index, verdict, self.probe);
        self.probe = false;
        self.release();
    }

    fn release(&mut self) {
        if self.probe {
            // Dropped without a verdict (a cancelled request): the probe
            // did not happen, so the next may go at once.
            let ep = &self.pool.endpoints[self.index];
            let mut h = ep.lock();
            if h.state == State::Probing {
                h.state = State::Ejected {
                    until: Instant::now(),
                };
            }
            self.probe = false;
        }
        if let Some(p) = self.permit.take() {
            drop(p);
            self.pool.notify.notify_waiters();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

impl Endpoint {
    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Pool {
    /// A pool of `(url, max_concurrency)` endpoints; `cooldown` is the AIMD
    /// cooldown between two cuts of one endpoint's limit.
    pub fn new(endpoints: &[(String, usize)], cooldown: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            endpoints: endpoints
                .iter()
                .map(|(url, ceiling)| Endpoint {
                    url: url.clone(),
                    limiter: AdaptiveLimiter::new(*ceiling, cooldown, None, None),
                    health: Mutex::new(Health {
                        state: State::Healthy,
                        failures_in_a_row: 0,
                        ejections_in_a_row: 0,
                        ejections: 0,
                        answered: 0,
                        failed: 0,
                    }),
                })
                .collect(),
            notify: Notify::new(),
        })
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Most requests in flight over every endpoint.
    pub fn capacity(&self) -> usize {
        self.endpoints
            .iter()
            .map(|e| e.limiter.ceiling())
            .sum::<usize>()
            .max(1)
    }

    /// Waits for a slot on the least-loaded healthy endpoint (in flight
    /// relative to its current limit); an ejected endpoint whose cooldown
    /// is over gets one probe.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_probe = match self.try_pick() {
                Ok(slot) => return slot,
                Err(next_probe) => next_probe,
            };
            match next_probe {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// A slot now, or when the earliest probe may go (if an endpoint is out).
    fn try_pick(self: &Arc<Self>) -> Result<Slot, Option<Instant>> {
        let now = Instant::now();
        let mut best: Option<(f64, usize)> = None;
        let mut next_probe: Option<Instant> = None;
        for (i, ep) in self.endpoints.iter().enumerate() {
            let h = ep.lock();
            match h.state {
                State::Healthy => {
                    let s = ep.limiter.stats();
                    let limit = s.limit.max(1) as f64;
                    if (s.in_flight as f64) < limit {
                        let load = s.in_flight as f64 / limit;
                        if best.is_none_or(|(b, _)| load < b) {
                            best = Some((load, i));
                        }
                    }
                }
                State::Ejected { until } if until <= now => {
                    drop(h);
                    if let Some(permit) = ep.limiter.try_acquire() {
                        let mut h = ep.lock();
                        if matches!(h.state, State::Ejected { until } if until <= now) {
                            h.state = State::Probing;
                            return Ok(Slot {
                                pool: self.clone(),
                                index: i,
                                permit: Some(permit),
                                probe: true,
                            });
                        }
                    }
                }
                State::Ejected { until } => {
                    next_probe = Some(next_probe.map_or(until, |n| n.min(until)));
                }
                State::Probing => {}
            }
        }
        if let Some((_, i)) = best {
            if let Some(permit) = self.endpoints[i].limiter.try_acquire() {
                return Ok(Slot {
                    pool: self.clone(),
                    index: i,
                    permit: Some(permit),
                    probe: false,
                });
            }
        }
        Err(next_probe)
    }

    fn record(&self, index: usize, verdict: Verdict, probe: bool) {
        let ep = &self.endpoints[index];
        match verdict {
            Verdict::Answered => ep.limiter.on_success(),
            Verdict::RateLimited => ep.limiter.on_rate_limited(),
            Verdict::Failed => {}
        }
        let mut h = ep.lock();
        match verdict {
            Verdict::Answered | Verdict::RateLimited => {
                h.answered += 1;
                h.failures_in_a_row = 0;
                if probe || h.state == State::Probing {
                    h.state = State::Healthy;
                    h.ejections_in_a_row = 0;
                }
            }
            Verdict::Failed => {
                h.failed += 1;
                h.failures_in_a_row += 1;
                // With one endpoint there is nowhere else to go: its
                // requests keep their own retries and backoff.
                let eject = self.endpoints.len() > 1
                    && match h.state {
                        State::Probing => true,
                        State::Healthy => h.failures_in_a_row >= EJECT_AFTER,
                        State::Ejected { .. } => false,
                    };
                if eject {
                    let cooldown = FIRST_COOLDOWN
                        .saturating_mul(1 << h.ejections_in_a_row.min(10))
                        .min(MAX_COOLDOWN);
                    h.ejections_in_a_row += 1;
                    h.ejections += 1;
                    h.state = State::Ejected {
                        until: Instant::now() + cooldown,
                    };
                }
            }
        }
        drop(h);
        self.notify.notify_waiters();
    }

    /// A snapshot of every endpoint.
    pub fn stats(&self) -> Vec<EndpointStats> {
        self.endpoints
            .iter()
            .map(|ep| {
                let h = ep.lock();
                EndpointStats {
                    url: ep.url.clone(),
                    answered: h.answered,
                    failed: h.failed,
                    ejections: h.ejections,
                    ejected: !matches!(h.state, State::Healthy),
                    limiter: ep.limiter.stats(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, conc: usize) -> Arc<Pool> {
        let eps: Vec<(String, usize)> = (0..n).map(|i| (format!("http://e{i}/v1"), conc)).collect();
        Pool::new(&eps, Duration::ZERO)
    }

    #[tokio::test]
    async fn requests_go_to_the_least_loaded_endpoint() {
        let p = pool(3, 2);
        assert_eq!(p.capacity(), 6);
        let mut slots = Vec::new();
        for _ in 0..6 {
            slots.push(p.acquire().await);
        }
        let mut per = [0; 3];
        for s in &slots {
            per[s.index] += 1;
        }
        assert_eq!(per, [2, 2, 2]);
        // Full: the next waits until one frees, and gets that endpoint.
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.acquire().await.index });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let freed = slots.remove(4);
        let index = freed.index;
        freed.finish(Verdict::Answered);
        assert_eq!(waiter.await.unwrap(), index);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_endpoints_are_ejected_then_probed_back() {
        let p = pool(2, 4);
        for _ in 0..EJECT_AFTER {
            let s = p.acquire().await;
            let i = s.index;
            // Only endpoint 0 fails.
            s.finish(if i == 0 {
                Verdict::Failed
            } else {
                Verdict::Answered
            });
        }
        // Endpoint 0 keeps failing until it is out.
        while !p.stats()[0].ejected {
            let s = p.acquire().await;
            let v = if s.index == 0 {
                Verdict::Failed
            } else {
                Verdict::Answered
            };
            s.finish(v);
        }
        for _ in 0..20 {
            let s = p.acquire().await;
            assert_eq!(s.index, 1, "an ejected endpoint gets nothing");
            s.finish(Verdict::Answered);
        }
        tokio::time::advance(FIRST_COOLDOWN + Duration::from_millis(1)).await;
        // The cooldown is over: one probe goes to endpoint 0.
        let probe = p.acquire().await;
        assert_eq!(probe.index, 0);
        probe.finish(Verdict::Failed);
        let st = &p.stats()[0];
        assert_eq!((st.ejected, st.ejections), (true, 2));
        // Twice as long this time; then a successful probe brings it back.
        tokio::time::advance(FIRST_COOLDOWN + Duration::from_millis(1)).await;
        let s = p.acquire().await;
        assert_eq!(s.index, 1);
        s.finish(Verdict::Answered);
        tokio::time::advance(FIRST_COOLDOWN).await;
        let probe = p.acquire().await;
        assert_eq!(probe.index, 0);
        probe.finish(Verdict::Answered);
        assert!(!p.stats()[0].ejected);
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_endpoint_is_out_a_request_waits_for_the_first_probe() {
        let p = pool(2, 1);
        while !p.stats().iter().all(|s| s.ejected) {
            p.acquire().await.finish(Verdict::Failed);
        }
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.acquire().await.index });
        tokio::time::sleep(FIRST_COOLDOWN / 2).await;
        assert!(!waiter.is_finished());
        tokio::time::sleep(FIRST_COOLDOWN).await;
        assert!(waiter.await.unwrap() < 2);
    }

    #[tokio::test]
    async fn a_single_endpoint_is_never_taken_out() {
        let p = pool(1, 1);
        for _ in 0..(EJECT_AFTER * 3) {
            p.acquire().await.finish(Verdict::Failed);
        }
        assert!(!p.stats()[0].ejected);
    }

    #[tokio::test]
    async fn a_429_cuts_one_endpoints_limit_only() {
        let p = pool(2, 8);
        let s = p.acquire().await;
        let i = s.index;
        s.finish(Verdict::RateLimited);
        let stats = p.stats();
        assert_eq!(stats[i].limiter.limit, 4);
        assert_eq!(stats[1 - i].limiter.limit, 8);
        assert!(!stats[i].ejected);
    }
}
