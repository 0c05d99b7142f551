//! What a pod's worker keeps resident while it waits.

use super::*;

/// Each pod's task holds its worker's future for the pod's life: the
/// worker itself is on the heap, and the large states of its passes are
/// boxed while they run (a future over the containerd runtime was tens of
/// KiB; this test's fake runtime makes smaller ones).
#[test]
fn a_waiting_worker_keeps_its_task_small() {
    let h = Harness::new();
    let (_spec_tx, spec_rx) = tokio::sync::watch::channel(pod(ONE));
    let (_term_tx, term_rx) = tokio::sync::watch::channel(None);
    let (_evict_tx, evict_rx) = tokio::sync::watch::channel(None);
    let worker = crate::worker::Worker::new(
        Arc::new(h.rt.clone()),
        h.sink.clone(),
        h.config.clone(),
        spec_rx,
        term_rx,
        evict_rx,
    );
    let run = Box::new(worker).run(Adopted::default());
    let size = std::mem::size_of_val(&run);
    assert!(size <= 1024, "the worker's future is {size} bytes");
}
