//! Grace periods, stop signals and sidecar order.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_stop_signal_ignorer_is_killed_when_the_grace_period_ends() {
    let (h, w) = Harness::running(ignores_stop()).await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(5));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(5));
    let calls = h.rt.calls();
    assert_eq!(signals(&calls), vec![Signal::TERM, Signal::KILL]);
    assert!(calls.contains(&Call::RemoveContainer { name: "app".into() }));
    assert!(matches!(calls.last(), Some(Call::RemoveSandbox { .. })));
    // The sandbox is stopped once the container has been killed, before it
    // is removed.
    let at = |wanted: fn(&Call) -> bool| calls.iter().position(wanted).expect("called");
    let killed = at(|c| {
        matches!(
            c,
            Call::Signal {
                signal: Signal::KILL,
                ..
            }
        )
    });
    let stopped = at(|c| matches!(c, Call::StopSandbox { .. }));
    assert!(killed < stopped && stopped < calls.len() - 1, "{calls:?}");
    let s = h.sink.latest();
    assert_eq!(phase(&s), "Failed");
    let t = terminated(&s, "app");
    assert_eq!(t.exit_code, 137);
    assert!(h.sink.reasons().contains(&reasons::KILLING));
}

#[tokio::test(start_paused = true)]
async fn a_container_that_handles_the_stop_signal_ends_at_once_and_the_pod_succeeds() {
    let (h, w) = Harness::running(Script {
        stop_exit_code: 0,
        ..Script::default()
    })
    .await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(30));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::ZERO);
    assert_eq!(phase(&h.sink.latest()), "Succeeded");
}

#[tokio::test(start_paused = true)]
async fn a_shorter_grace_cuts_the_wait_and_a_longer_one_is_ignored() {
    let (h, w) = Harness::running(ignores_stop()).await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.terminate(Duration::from_secs(60));
    w.terminate(Duration::from_secs(3));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn force_with_zero_grace_kills_at_once_and_a_small_grace_gets_two_seconds() {
    let (h, w) = Harness::running(ignores_stop()).await;
    let begin = Instant::now();
    w.terminate(Duration::ZERO);
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::ZERO);
    let signals: Vec<_> =
        h.rt.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Signal { .. }))
            .collect();
    assert_eq!(
        signals,
        vec![Call::Signal {
            name: "app".into(),
            signal: Signal::KILL
        }]
    );

    let (h, w) = Harness::running(ignores_stop()).await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(1));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn sidecars_start_first_and_stop_last_in_reverse_order() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    let w = h.spawn(pod(WITH_SIDECARS));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(start_order(h.rt.calls()), vec!["proxy", "logs", "app"]);
    let begin = Instant::now();
    w.terminate(Duration::from_secs(10));
    h.sink.wait_finished().await;
    // The main container holds out until SIGKILL; only then do the sidecars go.
    assert_eq!(Instant::now() - begin, Duration::from_secs(10));
    assert_eq!(stop_order(&h.rt.calls()), vec!["app", "logs", "proxy"]);
}

#[tokio::test(start_paused = true)]
async fn sidecars_are_stopped_when_the_main_containers_are_done() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(0, Duration::from_secs(5)));
    let _w = h.spawn(pod(WITH_SIDECARS));
    let s = h
        .sink
        .wait_for("Succeeded", |s| phase(s) == "Succeeded")
        .await;
    assert_eq!(stop_order(&h.rt.calls()), vec!["logs", "proxy"]);
    assert!(s.init_container_statuses.iter().flatten().all(|c| c
        .state
        .as_ref()
        .unwrap()
        .terminated
        .is_some()));
}

#[tokio::test(start_paused = true)]
async fn a_kill_the_runtime_cannot_take_yet_is_sent_again() {
    let (h, w) = Harness::running(ignores_stop()).await;
    // containerd is restarting: the first kills do not reach it.
    h.rt.fail_signals(3);
    let begin = Instant::now();
    w.terminate(Duration::ZERO);
    h.sink.wait_finished().await;
    assert!(
        Instant::now() - begin <= Duration::from_secs(2),
        "{:?}",
        Instant::now() - begin
    );
    assert_eq!(signals(&h.rt.calls()), vec![Signal::KILL]);
    assert_eq!(terminated(&h.sink.latest(), "app").exit_code, 137);
}
