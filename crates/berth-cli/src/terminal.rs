//! The local terminal of `exec -t` and `attach -t`: raw mode while the
//! session lasts, and the window size (sent again on every SIGWINCH).

use std::os::fd::{AsFd, AsRawFd};

use nix::sys::termios::{self, SetArg, Termios};

/// Raw mode on stdin until dropped, which restores the settings it found.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> std::io::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The terminal's size (columns, rows), from stdout's or stdin's terminal.
#[allow(unsafe_code)]
pub fn window_size() -> Option<(u16, u16)> {
    let fds = [
        std::io::stdout().as_fd().as_raw_fd(),
        std::io::stdin().as_fd().as_raw_fd(),
    ];
    fds.into_iter().find_map(|fd| {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` to the pointer, which
        // points at a live, properly aligned one.
        let done = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) };
        (done == 0 && size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
    })
}
