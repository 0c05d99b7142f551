//! A client command run in a pseudo-terminal, as a user at a terminal runs
//! it: the terminal is its controlling one (`setsid -c`), so resizing it
//! sends SIGWINCH; what it prints is collected for [`Terminal::wait_for`].

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use nix::pty::{openpty, Winsize};

pub struct Terminal {
    master: std::fs::File,
    /// The terminal's device, for `stty` to resize.
    slave_path: PathBuf,
    _slave: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    child: tokio::process::Child,
}

impl Terminal {
    /// Runs `program` (its program and arguments) on a new `cols`×`rows` terminal.
    pub fn spawn(program: &Command, cols: u16, rows: u16) -> Terminal {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("openpty");
        let slave_path =
            std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).expect("tty");
        let stdio = || Stdio::from(pty.slave.try_clone().expect("dup the terminal"));
        let mut command = Command::new("setsid");
        command
            .arg("-c")
            .arg(program.get_program())
            .args(program.get_args())
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio());
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn on the terminal");
        let master = std::fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the master");
        let collected = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every process closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                collected.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            master,
            slave_path,
            _slave: pty.slave,
            output,
            child,
        }
    }

    /// Types `text` (a `\r` is Enter).
    pub fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("type");
    }

    /// Everything shown so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the screen, after `from` bytes, shows `pattern`; returns
    /// the offset after it.
    pub async fn wait_for(&self, from: usize, pattern: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.output.lock().unwrap().clone();
            let tail = String::from_utf8_lossy(&screen[from.min(screen.len())..]).into_owned();
            if let Some(at) = tail.find(pattern) {
                return from + at + pattern.len();
            }
            assert!(
                Instant::now() < deadline,
                "{pattern:?} not shown within {timeout:?}; screen: {:?}",
                self.screen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How much was shown so far (an offset for [`Terminal::wait_for`]).
    pub fn shown(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Resizes the terminal; the kernel sends SIGWINCH to its foreground.
    pub fn resize(&self, cols: u16, rows: u16) {
        let tty = std::fs::File::open(&self.slave_path).expect("open the terminal");
        let status = Command::new("stty")
            .args(["cols", &cols.to_string(), "rows", &rows.to_string()])
            .stdin(tty)
            .status()
            .expect("stty");
        assert!(status.success(), "stty resize");
    }

    /// The program's exit code, waited for up to `timeout`.
    pub async fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("the program did not exit")
            .expect("wait");
        status.code()
    }
}

/// Types `stty size` at the shell on `terminal` (its prompt shown before
/// `at`) until it answers `rows cols`: a resize reaches the container's
/// terminal a moment after it was sent. Returns the offset after the
/// prompt that follows the answer.
pub async fn wait_for_size(
    terminal: &mut Terminal,
    mut at: usize,
    rows: u16,
    cols: u16,
    timeout: Duration,
) -> usize {
    let wanted = format!("{rows} {cols}");
    let deadline = Instant::now() + timeout;
    loop {
        terminal.type_text("stty size\r");
        let answer = terminal.wait_for(at, "# ", timeout).await;
        let found = terminal.screen()[at..answer].contains(&wanted);
        at = answer;
        if found {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "no {wanted}: {}",
            terminal.screen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Drives a shell (`sh`, started on `terminal` by exec) as a user would:
/// its prompt, `stty size` before and after a resize, a command typed and
/// run on a terminal, and `exit 3`, whose code the client exits with.
pub async fn drive_shell(terminal: &mut Terminal, timeout: Duration) {
    let at = terminal.wait_for(0, "# ", timeout).await;
    // The remote terminal has the local one's size...
    terminal.type_text("stty size\r");
    terminal.wait_for(at, "24 80", timeout).await;
    // ...and follows it when it changes.
    terminal.resize(132, 40);
    let deadline = Instant::now() + timeout;
    let at = loop {
        let from = terminal.shown();
        terminal.type_text("stty size\r");
        let answer = terminal.wait_for(from, "# ", timeout).await;
        if terminal.screen()[from..answer].contains("40 132") {
            break answer;
        }
        assert!(Instant::now() < deadline, "{}", terminal.screen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // What is typed runs in the container, on a terminal.
    terminal.type_text("echo answer-$((6*7)); [ -t 0 ] && echo on-a-tty\r");
    let at = terminal.wait_for(at, "answer-42", timeout).await;
    terminal.wait_for(at, "on-a-tty", timeout).await;
    terminal.type_text("exit 3\r");
    assert_eq!(
        terminal.exit_code(timeout).await,
        Some(3),
        "{}",
        terminal.screen()
    );
}
