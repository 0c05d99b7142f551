//! berth's container logger: the small process the shim spawns for each
//! container, which writes the container's output to its log file in the
//! CRI format. It is a crate (and a binary, `berth-logger`) of its own so
//! that each of those processes maps a small program, not the whole agent.
//!
//! # Layout
//! - [`run_logger`]: the process: the shim's pipes (fds 3 and 4) copied
//!   into the log file until both end, under the file's lock.
//! - [`LineSplitter`], [`Tag`], [`cri_line`]: how output becomes CRI entries.
//! - `LiveFile`: the log file, reopened when the agent rotates it.
//!
//! A task's stdio is `binary://<logger>?logger=<path>`: the shim runs
//! `<logger> logger <path>` with the container's stdout on fd 3, stderr on
//! fd 4 and a "ready" pipe on fd 5. It lives in the shim's process tree, so
//! logs keep flowing across agent restarts.
//!
//! Output is written as soon as it is read: a line the container has begun
//! but not ended goes out as a `P` entry, and the rest follows in later
//! entries up to the `F` that ends it. (containerd's CRI logger writes such a
//! line only at end-of-file, which here comes with the task's deletion, after
//! its exit is reported.)
//!
//! The logger holds an exclusive `flock` on the log file while it reads and
//! writes, so the agent can tell when all of a dead container's output is in
//! the file: the lock is free and the pipes are empty.
//!
//! When the agent rotates the file (renames it and puts a new one in its
//! place), the logger finds the path no longer names its open file before
//! its next copy, and reopens it: CRI's ReopenContainerLog, without a call.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use jiff::Timestamp;

/// The logger's command: the shim passes the stdio URI's query key as the
/// first argument, so the key is this name (`<logger> logger <path>`).
pub const LOGGER_SUBCOMMAND: &str = "logger";
/// A logger's command line, after the program's name: `logger <log>` as
/// the shim runs it (the pipes on fds 3 and 4), or `logger <log> <stdout>
/// <stderr>` as the agent runs it for a container with stdin and no
/// terminal (its output FIFOs). Nothing else: no flags, no other words.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    pub log_path: PathBuf,
    pub fifos: Option<(PathBuf, PathBuf)>,
}

impl Invocation {
    /// The invocation in a process's arguments (the program's name first).
    pub fn from_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Option<Invocation> {
        let words: Vec<_> = args.into_iter().skip(1).collect();
        let (command, rest) = words.split_first()?;
        if command != LOGGER_SUBCOMMAND
            || rest.iter().any(|w| w.as_encoded_bytes().starts_with(b"-"))
        {
            return None;
        }
        let path = |w: &std::ffi::OsString| PathBuf::from(w);
        match rest {
            [log] => Some(Invocation {
                log_path: path(log),
                fifos: None,
            }),
            [log, stdout, stderr] => Some(Invocation {
                log_path: path(log),
                fifos: Some((path(stdout), path(stderr))),
            }),
            _ => None,
        }
    }

    /// Runs the logger to the end of the container's output.
    pub fn run(&self) -> std::process::ExitCode {
        let fifos = self.fifos.as_ref().map(|(o, e)| (o.as_path(), e.as_path()));
        match run_logger(&self.log_path, fifos) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth logger: {}: {e}", self.log_path.display());
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// Longest log entry before a line is split into partial fragments (containerd's default).
const MAX_ENTRY: usize = 16 * 1024;

/// One read from a pipe. Small, because each container has a logger and the
/// buffer is resident in each (64 KiB cost 48 KiB more per logger); a flood
/// takes a few more reads per pipeful.
const READ_SIZE: usize = 16 * 1024;

/// The most one stream copies before the other gets its turn.
const ROUND_LIMIT: usize = 1024 * 1024;

/// CRI's tag: the entry ends a line (`F`) or continues in the next one (`P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Full,
    Partial,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Full => "F",
            Tag::Partial => "P",
        }
    }
}

/// Cuts a byte stream into CRI entries: one per line, lines longer than the
/// maximum in `P` fragments ending with an `F`.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            pending: Vec::new(),
        }
    }

    /// Feeds bytes; returns the entries they complete.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<(Tag, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(newline) = data.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&data[..newline]);
            data = &data[newline + 1..];
            self.flush_partials(&mut out);
            let mut line = std::mem::take(&mut self.pending);
            // Like Go's bufio ReadLine, which containerd uses: "\r\n" ends a line too.
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            out.push((Tag::Full, line));
        }
        self.pending.extend_from_slice(data);
        self.flush_partials(&mut out);
        out
    }

    /// All that was read is copied: the line begun and not ended so far
    /// goes out as a partial entry, to be continued. A last `\r` is kept
    /// back, as it may be the start of a `\r\n`.
    pub fn flush_partial(&mut self) -> Option<(Tag, Vec<u8>)> {
        let keep = usize::from(self.pending.last() == Some(&b'\r'));
        let cut = self.pending.len() - keep;
        (cut > 0).then(|| {
            let rest = self.pending.split_off(cut);
            (Tag::Partial, std::mem::replace(&mut self.pending, rest))
        })
    }

    /// The end of the stream. A last line without a newline is written as a
    /// partial entry, exactly as containerd's CRI logger does (it never saw the
    /// line end); readers show it all the same.
    pub fn finish(&mut self) -> Option<(Tag, Vec<u8>)> {
        (!self.pending.is_empty()).then(|| (Tag::Partial, std::mem::take(&mut self.pending)))
    }

    fn flush_partials(&mut self, out: &mut Vec<(Tag, Vec<u8>)>) {
        while self.pending.len() > self.max {
            let rest = self.pending.split_off(self.max);
            out.push((Tag::Partial, std::mem::replace(&mut self.pending, rest)));
        }
    }
}

/// One CRI log line: `<RFC3339Nano UTC> <stream> <F|P> <msg>\n`.
pub fn cri_line(time: Timestamp, stream: &str, tag: Tag, msg: &[u8]) -> Vec<u8> {
    let mut line = format!("{time} {stream} {} ", tag.as_str()).into_bytes();
    line.extend_from_slice(msg);
    line.push(b'\n');
    line
}

/// The `berth logger <path>` entry point: copies fd 3 (stdout) and fd 4
/// (stderr) into `log_path` until both reach EOF. With `fifos` (stdout,
/// stderr), spawned by berth for a container with stdin and no terminal
/// (see `stdio`), it first opens them as fds 3 and 4, waiting for the
/// shim's write ends; the shim's ready pipe is then not there.
pub fn run_logger(log_path: &Path, fifos: Option<(&Path, &Path)>) -> io::Result<()> {
    ignore_sigterm()?;

    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if let Some((stdout, stderr)) = fifos {
        // Before anything else is open, and in this order: the shim opens
        // stdout's write end before stderr's.
        place(File::open(stdout)?, 3)?;
        place(File::open(stderr)?, 4)?;
    }
    let file = LiveFile::open(log_path)?;
    let sources = vec![
        Source::new(inherited(3), "stdout")?,
        Source::new(inherited(4), "stderr")?,
    ];
    if fifos.is_none() {
        // Ready: the shim starts the container once fd 5 is closed.
        let _ = nix::unistd::close(5);
    }
    Logger::new(file, sources).run()
}

/// Makes `file` descriptor `fd`, where the shim puts the pipes (and where
/// the agent looks for them, see [`LoggerPipes`]).
#[allow(unsafe_code)]
fn place(file: File, fd: RawFd) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    if file.as_raw_fd() == fd {
        let _ = file.into_raw_fd();
        return Ok(());
    }
    // SAFETY: dup2 takes two plain descriptor numbers; `file` is open for
    // the call, and `fd` is one nothing in this process owns (these FIFOs
    // are the first files the logger opens).
    if unsafe { libc::dup2(file.as_raw_fd(), fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies container output from pipes into the log file.
struct Logger {
    file: LiveFile,
    sources: Vec<Source>,
    buf: Vec<u8>,
    /// A write failed before: said once, then output is dropped while the
    /// pipes are still drained, so that the container never blocks on them.
    write_failed: bool,
}

impl Logger {
    fn new(file: LiveFile, sources: Vec<Source>) -> Logger {
        Logger {
            file,
            sources,
            buf: vec![0; READ_SIZE],
            write_failed: false,
        }
    }

    fn run(mut self) -> io::Result<()> {
        while self.sources.iter().any(|s| s.open) {
            wait_readable(&self.sources)?;
            self.copy_available();
        }
        Ok(())
    }

    /// Copies what the pipes hold now, under the file's lock.
    fn copy_available(&mut self) {
        self.file.follow_rotation();
        let locked = self.file.file.lock();
        let (file, write_failed) = (&mut self.file, &mut self.write_failed);
        for source in &mut self.sources {
            source.copy_round(&mut self.buf, &mut |lines| {
                if let Err(e) = file.append(lines) {
                    if !std::mem::replace(write_failed, true) {
                        eprintln!("berth logger: {}: {e}", file.path.display());
                    }
                }
            });
        }
        if locked.is_ok() {
            let _ = self.file.file.unlock();
        }
    }
}

/// One of the container's output pipes.
struct Source {
    pipe: File,
    stream: &'static str,
    splitter: LineSplitter,
    open: bool,
}

impl Source {
    /// Takes a pipe, non-blocking so that a round stops when it is empty.
    fn new(pipe: File, stream: &'static str) -> io::Result<Source> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(pipe.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(pipe.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Source {
            pipe,
            stream,
            splitter: LineSplitter::new(MAX_ENTRY),
            open: true,
        })
    }

    /// Passes the CRI lines of what the pipe holds now (at most
    /// [`ROUND_LIMIT`] of it) to `write`. Once the pipe is empty, a line
    /// begun goes out too.
    fn copy_round(&mut self, buf: &mut [u8], write: &mut dyn FnMut(&[u8])) {
        let mut copied = 0;
        while self.open && copied < ROUND_LIMIT {
            let entries = match self.pipe.read(buf) {
                Ok(0) => {
                    self.open = false;
                    self.splitter.finish().into_iter().collect()
                }
                Ok(n) => {
                    copied += n;
                    self.splitter.push(&buf[..n])
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    write(&render(self.stream, self.splitter.flush_partial()));
                    return;
                }
                Err(e) => {
                    eprintln!("berth logger: reading {}: {e}", self.stream);
                    self.open = false;
                    self.splitter.finish().into_iter().collect()
                }
            };
            write(&render(self.stream, entries));
        }
    }
}

/// The CRI lines of `entries`, all stamped with the time they were read.
fn render(stream: &str, entries: impl IntoIterator<Item = (Tag, Vec<u8>)>) -> Vec<u8> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    for (tag, msg) in entries {
        out.extend(cri_line(now, stream, tag, &msg));
    }
    out
}

/// Waits until a pipe has data or is closed.
#[allow(unsafe_code)]
fn wait_readable(sources: &[Source]) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = sources
        .iter()
        .filter(|s| s.open)
        .map(|s| libc::pollfd {
            fd: s.pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `fds` is an array of `fds.len()` initialised pollfd
        // structs, exclusively borrowed for the call, and every fd in it is
        // open (owned by `sources`).
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// The shim sends SIGTERM when the task goes; draining to EOF matters more.
/// Process-wide, because the caller may already run other threads.
#[allow(unsafe_code)]
fn ignore_sigterm() -> io::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code, so nothing runs in signal
    // context and no async-signal-safety rule can be broken.
    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }
        .map(drop)
        .map_err(io::Error::from)
}

/// A descriptor the shim passed in (or [`place`] put there).
#[allow(unsafe_code)]
fn inherited(fd: RawFd) -> File {
    // SAFETY: fds 3 and 4 are the pipes the shim hands to the logger process
    // (or the FIFOs `place` put there); nothing else in this process owns
    // them, so taking ownership once is sound.
    unsafe { File::from_raw_fd(fd) }
}

/// The log file at a path that log rotation may move away.
struct LiveFile {
    path: PathBuf,
    file: File,
    /// The open file's (device, inode), compared with the path's before
    /// each write; `None` if it could not be read (then every write reopens).
    identity: Option<(u64, u64)>,
}

impl LiveFile {
    fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        let identity = file.metadata().ok().map(|m| (m.dev(), m.ino()));
        Ok(Self {
            path: path.to_owned(),
            file,
            identity,
        })
    }

    /// Goes on in the file the path names now: after a rotation, the new
    /// one. If that cannot be opened, the output still goes to the old file
    /// rather than being lost.
    fn follow_rotation(&mut self) {
        if self.moved() {
            match Self::open(&self.path) {
                Ok(fresh) => *self = fresh,
                Err(e) => eprintln!("berth logger: reopen {}: {e}", self.path.display()),
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes)
    }

    fn moved(&self) -> bool {
        let named = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        named.ok() != self.identity || self.identity.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(Into::into).collect()
    }

    #[test]
    fn the_logger_takes_exactly_the_shims_or_the_agents_words() {
        assert_eq!(
            Invocation::from_args(args(&["/usr/bin/berth-logger", "logger", "/l/0.log"])),
            Some(Invocation {
                log_path: "/l/0.log".into(),
                fifos: None
            })
        );
        assert_eq!(
            Invocation::from_args(args(&["berth", "logger", "/l/0.log", "/f/out", "/f/err"])),
            Some(Invocation {
                log_path: "/l/0.log".into(),
                fifos: Some(("/f/out".into(), "/f/err".into()))
            })
        );
        for other in [
            &["berth"][..],
            &["berth", "logger"],
            &["berth", "logger", "--help"],
            &["berth", "logger", "a", "b"],
            &["berth", "logger", "a", "b", "c", "d"],
            &["berth", "logger", "a", "-b", "c"],
            &["berth", "get", "pods"],
            &["berth", "--socket", "logger"],
        ] {
            assert_eq!(Invocation::from_args(args(other)), None, "{other:?}");
        }
    }

    fn entries(splitter: &mut LineSplitter, data: &[u8]) -> Vec<(Tag, String)> {
        splitter
            .push(data)
            .into_iter()
            .map(|(t, m)| (t, String::from_utf8(m).unwrap()))
            .collect()
    }

    #[test]
    fn lines_become_full_entries_across_reads() {
        let mut s = LineSplitter::new(16);
        assert_eq!(
            entries(&mut s, b"hello\nwor"),
            vec![(Tag::Full, "hello".into())]
        );
        assert_eq!(
            entries(&mut s, b"ld\r\n\nx"),
            vec![(Tag::Full, "world".into()), (Tag::Full, "".into())]
        );
        assert_eq!(s.finish(), Some((Tag::Partial, b"x".to_vec())));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_split_into_partials_with_a_final_full() {
        let mut s = LineSplitter::new(4);
        assert_eq!(
            entries(&mut s, b"abcdefghij\n"),
            vec![
                (Tag::Partial, "abcd".into()),
                (Tag::Partial, "efgh".into()),
                (Tag::Full, "ij".into())
            ]
        );
        // Exactly the maximum is still one full entry.
        assert_eq!(entries(&mut s, b"abcd\n"), vec![(Tag::Full, "abcd".into())]);
        // Partials are emitted as soon as the maximum is passed, not at the newline.
        assert_eq!(
            entries(&mut s, b"abcde"),
            vec![(Tag::Partial, "abcd".into())]
        );
        assert_eq!(entries(&mut s, b"\n"), vec![(Tag::Full, "e".into())]);
    }

    #[test]
    fn a_rotated_file_is_reopened_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut live = LiveFile::open(&path).unwrap();
        let mut append = |bytes: &[u8]| {
            live.follow_rotation();
            live.append(bytes).unwrap();
        };
        append(b"before\n");
        let rotated = dir.path().join("0.log.20260101-000000");
        std::fs::rename(&path, &rotated).unwrap();
        // Gone: the logger makes the new file itself.
        append(b"after\n");
        // Replaced by the rotator: the logger appends to the new one.
        std::fs::rename(&path, dir.path().join("second")).unwrap();
        std::fs::write(&path, "").unwrap();
        append(b"third\n");
        append(b"fourth\n");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&rotated), "before\n");
        assert_eq!(read(&dir.path().join("second")), "after\n");
        assert_eq!(read(&path), "third\nfourth\n");
    }

    #[test]
    fn a_begun_line_is_flushed_as_a_partial_keeping_a_last_carriage_return() {
        let mut s = LineSplitter::new(16);
        assert_eq!(entries(&mut s, b"abc"), vec![]);
        assert_eq!(s.flush_partial(), Some((Tag::Partial, b"abc".to_vec())));
        assert_eq!(s.flush_partial(), None);
        assert_eq!(
            entries(&mut s, b"def\nghi\r"),
            vec![(Tag::Full, "def".into())]
        );
        assert_eq!(s.flush_partial(), Some((Tag::Partial, b"ghi".to_vec())));
        assert_eq!(s.flush_partial(), None);
        // The held `\r` was the start of a `\r\n`.
        assert_eq!(entries(&mut s, b"\n"), vec![(Tag::Full, "".into())]);
        assert_eq!(entries(&mut s, b"\r"), vec![]);
        assert_eq!(s.finish(), Some((Tag::Partial, b"\r".to_vec())));
    }

    /// A logger copying from two pipes into `dir/0.log`, and the pipes' write ends.
    fn logger_with_pipes(dir: &Path) -> (Logger, [File; 2]) {
        let mut writers = Vec::new();
        let mut sources = Vec::new();
        for stream in ["stdout", "stderr"] {
            let (read, write) = nix::unistd::pipe().unwrap();
            sources.push(Source::new(File::from(read), stream).unwrap());
            writers.push(File::from(write));
        }
        let file = LiveFile::open(&dir.join("0.log")).unwrap();
        let writers: [File; 2] = writers.try_into().unwrap();
        (Logger::new(file, sources), writers)
    }

    /// The log's entries as (stream, tag, message).
    fn logged(dir: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(dir.join("0.log"))
            .unwrap()
            .lines()
            .map(|line| {
                let mut f = line.splitn(4, ' ').skip(1).map(str::to_owned);
                let mut next = || f.next().unwrap_or_default();
                (next(), next(), next())
            })
            .collect()
    }

    fn entry(stream: &str, tag: &str, msg: &str) -> (String, String, String) {
        (stream.into(), tag.into(), msg.into())
    }

    #[test]
    fn output_without_a_newline_is_written_as_soon_as_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut logger, [mut out, mut err]) = logger_with_pipes(dir.path());
        out.write_all(b"DONE").unwrap();
        logger.copy_available();
        assert_eq!(logged(dir.path()), [entry("stdout", "P", "DONE")]);

        // The line goes on and ends; the other stream has its own lines.
        out.write_all(b" and more\nnext").unwrap();
        err.write_all(b"oops\n").unwrap();
        logger.copy_available();
        assert_eq!(
            logged(dir.path())[1..],
            [
                entry("stdout", "F", " and more"),
                entry("stdout", "P", "next"),
                entry("stderr", "F", "oops"),
            ]
        );

        // Nothing new: nothing written. At the end both streams close.
        logger.copy_available();
        assert_eq!(logged(dir.path()).len(), 4);
        drop((out, err));
        logger.run().unwrap();
        assert_eq!(logged(dir.path()).len(), 4);
    }

    #[test]
    fn a_flood_is_copied_in_rounds_shared_by_the_streams() {
        let dir = tempfile::tempdir().unwrap();
        let (logger, [mut out, mut err]) = logger_with_pipes(dir.path());
        let copier = std::thread::spawn(move || logger.run());
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..30_000 {
            out.write_all(line.as_bytes()).unwrap();
        }
        err.write_all(b"last").unwrap();
        drop((out, err));
        copier.join().unwrap().unwrap();
        let entries = logged(dir.path());
        assert_eq!(entries.len(), 30_001);
        assert!(entries
            .iter()
            .filter(|e| e.0 == "stdout")
            .all(|e| e.1 == "F" && e.2.len() == 99));
        assert!(entries.contains(&entry("stderr", "P", "last")));
    }

    #[test]
    fn cri_lines_have_time_stream_tag_and_message() {
        let time: Timestamp = "2024-05-01T10:11:12.5Z".parse().unwrap();
        assert_eq!(
            cri_line(time, "stdout", Tag::Full, b"hi there"),
            b"2024-05-01T10:11:12.5Z stdout F hi there\n"
        );
        let time: Timestamp = "2024-05-01T10:11:12.123456789Z".parse().unwrap();
        assert_eq!(
            cri_line(time, "stderr", Tag::Partial, b""),
            b"2024-05-01T10:11:12.123456789Z stderr P \n"
        );
    }
}
