//! One pull per reference at a time: callers that ask while a pull of the
//! same reference runs wait for it (and see its progress from then on)
//! instead of fetching again. A pull that finished is forgotten, so the next
//! caller resolves the tag afresh.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use berth_runtime::{ImageInfo, PullProgress, RuntimeError};
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::mpsc::UnboundedSender;

type Outcome = Result<ImageInfo, RuntimeError>;

/// Where a running pull reports progress: every caller that joined it.
#[derive(Clone, Default)]
pub(crate) struct Progress(Arc<Mutex<Vec<UnboundedSender<PullProgress>>>>);

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<UnboundedSender<PullProgress>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, sender: Option<UnboundedSender<PullProgress>>) {
        if let Some(sender) = sender {
            self.lock().push(sender);
        }
    }

    pub fn report(&self, layer: &str, done: u64, total: u64) {
        let report = PullProgress {
            layer: layer.to_string(),
            done,
            total,
        };
        // A caller that went away stops listening; the pull goes on.
        self.lock().retain(|s| s.send(report.clone()).is_ok());
    }
}

struct Flight {
    outcome: Shared<BoxFuture<'static, Outcome>>,
    progress: Progress,
}

/// The pulls under way, by normalized reference.
#[derive(Clone, Default)]
pub(crate) struct Flights(Arc<Mutex<HashMap<String, Flight>>>);

impl Flights {
    /// Joins the pull of `key` under way, or starts one with `start`. The
    /// pull runs as a task of its own: a caller that gives up does not
    /// cancel it for the others.
    pub async fn join<F, Fut>(
        &self,
        key: &str,
        progress: Option<UnboundedSender<PullProgress>>,
        start: F,
    ) -> Outcome
    where
        F: FnOnce(Progress) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let outcome = {
            let mut flights = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(key) {
                Some(flight) => {
                    tracing::debug!(image = key, "joining the pull under way");
                    flight.progress.add(progress);
                    flight.outcome.clone()
                }
                None => {
                    let hub = Progress::default();
                    hub.add(progress);
                    let pull = start(hub.clone());
                    let this = self.clone();
                    let owned_key = key.to_string();
                    // Removed by the task itself, under the lock, so nobody
                    // can join a finished pull after it is gone.
                    let task = tokio::spawn(async move {
                        let outcome = pull.await;
                        this.0
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&owned_key);
                        outcome
                    });
                    let outcome = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(RuntimeError::other(format!("pull task failed: {e}")))
                        })
                    }
                    .boxed()
                    .shared();
                    flights.insert(
                        key.to_string(),
                        Flight {
                            outcome: outcome.clone(),
                            progress: hub,
                        },
                    );
                    outcome
                }
            }
        };
        outcome.await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use berth_runtime::ImageConfig;
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    fn image() -> ImageInfo {
        ImageInfo {
            reference: "r/a:1".into(),
            digest: "sha256:1".into(),
            size: 1,
            config: ImageConfig::default(),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_pull_and_its_progress() {
        let flights = Flights::default();
        let starts = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let first = {
            let (flights, starts) = (flights.clone(), starts.clone());
            tokio::spawn(async move {
                flights
                    .join("r/a:1", Some(tx1), |hub| async move {
                        starts.fetch_add(1, Ordering::SeqCst);
                        let _ = released.await;
                        hub.report("sha256:l", 5, 5);
                        Ok(image())
                    })
                    .await
            })
        };
        // Wait until the first pull is registered, then join it.
        while flights.0.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let second = {
            let (flights, starts) = (flights.clone(), starts.clone());
            tokio::spawn(async move {
                flights
                    .join("r/a:1", Some(tx2), |_| async move {
                        starts.fetch_add(1, Ordering::SeqCst);
                        Ok(image())
                    })
                    .await
            })
        };
        while flights
            .0
            .lock()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .progress
            .lock()
            .len()
            < 2
        {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), image());
        assert_eq!(second.await.unwrap().unwrap(), image());
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(rx1.recv().await.unwrap().done, 5);
        assert_eq!(rx2.recv().await.unwrap().done, 5);
        // Finished pulls are forgotten: the next caller pulls afresh.
        assert!(flights.0.lock().unwrap().is_empty());
        let again = flights
            .join("r/a:1", None, |_| async {
                Err(RuntimeError::other("boom"))
            })
            .await;
        assert_eq!(again.unwrap_err().message, "boom");
    }
}
