//! Waiting for a started task's process to run the container's command.
//!
//! A task's Start returns once runc has released the container's init
//! process, before that process has exec'd the command: for a moment it is
//! still runc's init. A container reported Running then may not have run
//! a single instruction of its own, and its first output is not yet in its
//! log. The kubelet never shows that moment: it sees the container running
//! at its next relist of the runtime (PLEG), by which time the command
//! runs. berth reports Running as soon as the start returns, so it waits
//! for the exec first: until the process no longer carries the name runc's
//! init gives itself, has exited, or is gone.

use std::time::Duration;

use tokio::time::Instant;

/// The name (`comm`) runc's init process sets for itself until it execs.
const RUNC_INIT: &str = "runc:[2:INIT]";

/// How often the process is looked at: at once, then after 1 ms, doubling
/// up to 8 ms (under a burst of starts, many pods poll at once, and the exec
/// waits for CPU they would take); and for how long at most (a process that
/// takes longer to exec is reported started all the same).
const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(8);
const LIMIT: Duration = Duration::from_secs(2);

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProcStat<'a> {
    pub(crate) comm: &'a str,
    pub(crate) state: char,
}

/// Parses `pid (comm) state ...`; `comm` may hold spaces and parentheses,
/// so it ends at the last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<ProcStat<'_>> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some(ProcStat { comm, state })
}

/// Whether the process still waits to become the container's command.
fn still_runc_init(stat: &str) -> bool {
    parse_stat(stat).is_some_and(|s| s.comm == RUNC_INIT && !matches!(s.state, 'Z' | 'X'))
}

/// Returns once process `pid` (a host pid) has exec'd the container's
/// command, exited or gone, or after [`LIMIT`].
pub(crate) async fn wait_for_exec(pid: u32) {
    let path = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + LIMIT;
    let mut poll = FIRST_POLL;
    loop {
        // A procfs read never waits on a disk: no blocking-pool hop.
        match std::fs::read_to_string(&path) {
            Ok(stat) if still_runc_init(&stat) => {}
            _ => return,
        }
        if Instant::now() >= deadline {
            tracing::debug!(pid, "container process still in runc init after {LIMIT:?}");
            return;
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(MAX_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_and_state_even_with_odd_names() {
        let stat = "4242 (runc:[2:INIT]) S 4200 4242 4242 0 -1 4194560";
        assert_eq!(
            parse_stat(stat),
            Some(ProcStat {
                comm: "runc:[2:INIT]",
                state: 'S'
            })
        );
        let odd = parse_stat("7 (a) b (c)) R 1 7").unwrap();
        assert_eq!((odd.comm, odd.state), ("a) b (c)", 'R'));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn waits_only_while_runc_init_is_alive() {
        assert!(still_runc_init("9 (runc:[2:INIT]) S 1"));
        assert!(!still_runc_init("9 (sh) S 1"));
        assert!(!still_runc_init("9 (runc:[2:INIT]) Z 1"));
        assert!(!still_runc_init(""));
    }
}
