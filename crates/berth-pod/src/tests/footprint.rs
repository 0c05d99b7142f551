//! What a pod's worker keeps resident while it waits.

use super::*;
use crate::worker::Worker;

/// A worker for pod [`ONE`], made as a pod's task makes it (its senders
/// dropped: these tests only look at it).
fn worker(h: &Harness) -> Worker<FakeRuntime, Recorder> {
    let (_spec_tx, spec_rx) = tokio::sync::watch::channel(pod(ONE));
    let (_term_tx, term_rx) = tokio::sync::watch::channel(None);
    let (_evict_tx, evict_rx) = tokio::sync::watch::channel(None);
    Worker::new(
        Arc::new(h.rt.clone()),
        h.sink.clone(),
        h.config.clone(),
        spec_rx,
        term_rx,
        evict_rx,
    )
}

/// Each pod's task holds its worker's future for the pod's life: the
/// worker itself is on the heap, and the large states of its passes are
/// boxed while they run (a future over the containerd runtime was tens of
/// KiB; this test's fake runtime makes smaller ones).
#[test]
fn a_waiting_worker_keeps_its_task_small() {
    let h = Harness::new();
    let run = Box::new(worker(&h)).run(Adopted::default());
    let size = std::mem::size_of_val(&run);
    assert!(size <= 1024, "the worker's future is {size} bytes");
}

/// A worker's channels each allocate a block of 32 message slots when made,
/// kept for the pod's life: boxed messages make it 256 bytes, not 2 KiB.
#[test]
fn a_workers_channels_carry_boxed_messages() {
    fn slot<T>(_: &tokio::sync::mpsc::UnboundedSender<T>) -> usize {
        std::mem::size_of::<T>()
    }
    let h = Harness::new();
    let worker = worker(&h);
    let pointer = std::mem::size_of::<usize>();
    assert_eq!(slot(&worker.exits_tx), pointer, "exit notes");
    assert_eq!(slot(&worker.probe_tx), pointer, "probe updates");
}
