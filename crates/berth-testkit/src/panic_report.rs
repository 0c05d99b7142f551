//! A failing test's message, written at once to the process's own stderr.
//!
//! The test harness holds a test's output back and prints it in a block
//! after every test has run. A CI log cut to the lines around a `FAILED`
//! then shows which test failed but not why. This hook writes the panic's
//! place and (shortened) message beside that line as well, past the
//! harness's capture, which only takes the `print!` family.

use std::io::Write;
use std::sync::Once;

/// The most of a message shown at once; the whole is still in the
/// harness's block at the end.
const SHOWN: usize = 2000;

/// Installs the hook once per process; the harness's own report is kept.
pub fn report_panics_at_once() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("(not a string)");
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let _ = writeln!(
                std::io::stderr(),
                "test {} panicked at {place}: {}",
                thread.name().unwrap_or("?"),
                shortened(message),
            );
            previous(info);
        }));
    });
}

/// `message` cut to [`SHOWN`] bytes at a character boundary.
fn shortened(message: &str) -> String {
    if message.len() <= SHOWN {
        return message.to_string();
    }
    let mut end = SHOWN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &message[..end], message.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        let long = "é".repeat(SHOWN);
        let cut = shortened(&long);
        assert!(cut.starts_with(&"é".repeat(SHOWN / 2)));
        assert!(cut.ends_with(&format!("({} bytes more)", SHOWN)), "{cut}");
        assert_eq!(shortened("short"), "short");
    }
}
