//! CrashLoopBackOff, as the kubelet keeps it (docs/kubelet-semantics.md §3.2): no
//! back-off for the first restart, then the initial delay doubling to the
//! maximum; an entry untouched for twice the maximum starts over.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// The two bounds of the back-off (config `crashLoopBackOff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_advance: Instant,
}

/// One pod's back-off table, keyed by container name and image (a new image
/// resets the back-off, as the kubelet's key includes the spec hash).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    entries: HashMap<(String, String), Entry>,
}

impl Backoff {
    pub(crate) fn new(policy: BackoffPolicy) -> Self {
        let initial = policy.initial.min(policy.max);
        Self {
            policy: BackoffPolicy { initial, ..policy },
            entries: HashMap::new(),
        }
    }

    /// When the container, which finished at `finished`, is still held back
    /// at `now`: `Some((until, delay))`. An entry untouched for twice the
    /// maximum before `finished` no longer holds (see [`Self::restarted`]).
    pub(crate) fn held_until(
        &self,
        key: &(String, String),
        finished: Instant,
        now: Instant,
    ) -> Option<(Instant, Duration)> {
        let entry = self.entries.get(key)?;
        if self.stale(entry, finished) {
            return None;
        }
        let until = finished + entry.delay;
        (now < until).then_some((until, entry.delay))
    }

    /// When the key's last failure is still held back by its delay (image
    /// pulls: the delay counts from the failure itself).
    pub(crate) fn held(&self, key: &(String, String)) -> Option<(Instant, Duration)> {
        let last = self.entries.get(key)?.last_advance;
        self.held_until(key, last, Instant::now())
    }

    fn stale(&self, entry: &Entry, finished: Instant) -> bool {
        finished.saturating_duration_since(entry.last_advance) > 2 * self.policy.max
    }

    /// Records the restart of a container that finished at `finished`: an
    /// entry gone stale by then starts over at the initial delay.
    pub(crate) fn restarted(&mut self, key: (String, String), finished: Instant) {
        if self
            .entries
            .get(&key)
            .is_some_and(|e| self.stale(e, finished))
        {
            self.entries.remove(&key);
        }
        self.advance(key);
    }

    /// Records a restart: the next crash waits longer.
    pub(crate) fn advance(&mut self, key: (String, String)) {
        let now = Instant::now();
        let policy = self.policy;
        self.entries
            .entry(key)
            .and_modify(|e| {
                e.delay = (e.delay * 2).min(policy.max);
                e.last_advance = now;
            })
            .or_insert(Entry {
                delay: policy.initial,
                last_advance: now,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (String, String) {
        ("app".into(), "busybox".into())
    }

    #[tokio::test(start_paused = true)]
    async fn first_restart_is_immediate_then_doubles_to_the_cap() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(40),
        });
        let mut seen = Vec::new();
        for _ in 0..5 {
            let finished = Instant::now();
            match b.held_until(&key(), finished, Instant::now()) {
                None => seen.push(0),
                Some((until, delay)) => {
                    seen.push(delay.as_secs());
                    tokio::time::sleep_until(until).await;
                    assert!(b.held_until(&key(), finished, Instant::now()).is_none());
                }
            }
            b.restarted(key(), finished);
        }
        assert_eq!(seen, vec![0, 10, 20, 40, 40]);
    }

    #[tokio::test(start_paused = true)]
    async fn resets_after_twice_the_maximum() {
        let mut b = Backoff::new(BackoffPolicy::default());
        b.advance(key());
        b.advance(key());
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(b
            .held_until(&key(), Instant::now(), Instant::now())
            .is_none());
        b.restarted(key(), Instant::now());
        let (_, delay) = b
            .held_until(&key(), Instant::now(), Instant::now())
            .unwrap();
        assert_eq!(delay, Duration::from_secs(10));
    }

    #[test]
    fn initial_above_max_is_clamped() {
        let b = Backoff::new(BackoffPolicy {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(5),
        });
        assert_eq!(b.policy.initial, Duration::from_secs(5));
    }
}
