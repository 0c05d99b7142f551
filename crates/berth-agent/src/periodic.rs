//! The agent's periodic passes (image GC, log rotation, saving events) tick
//! the same way: the first pass at once, then one per period until stopped;
//! a slow pass delays the next instead of bunching them up.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub(crate) struct Every {
    ticker: Interval,
    stop: CancellationToken,
}

impl Every {
    pub(crate) fn new(period: Duration, stop: &CancellationToken) -> Self {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            ticker,
            stop: stop.clone(),
        }
    }

    /// Waits for the next pass; `false` once stopped.
    pub(crate) async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = self.ticker.tick() => true,
        }
    }
}
