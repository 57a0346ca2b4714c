//! The supervisor: when `run` must stay (masking, file cleanup) it starts
//! the command as a child, forwards signals to it, masks its output,
//! reaps zombies when it is PID 1, and returns the child's exit status
//! (docs/design.md §13, docs/run.md "Signals").
//!
//! Signals arrive through signal-hook's self-pipe (no unsafe code here,
//! and the handler only writes a byte), with their origin: a SIGINT or
//! SIGQUIT that the terminal generated has already reached the child when
//! it shares our foreground process group, so it is not sent a second
//! time; one sent with `kill` is forwarded.

use std::io::{ErrorKind, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgrp, tcgetpgrp};
use signal_hook::consts::signal::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;
use zeroize::Zeroizing;

use super::RunError;
use super::mask::{Masker, Patterns};

/// The signals passed on to the command.
pub const FORWARDED: [i32; 6] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

/// How long output is still copied after the command exits: a background
/// process it left behind may hold the pipe open forever.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Read size of the output pumps.
const CHUNK: usize = 64 * 1024;

/// Signal handling, installed before anything worth cleaning up exists
/// (the secrets directory, the child), so a signal from then on is never
/// fatal to `run` before it has cleaned up.
pub struct Supervisor {
    signals: SignalsInfo<WithOrigin>,
}

/// Which output streams are masked, with what.
pub struct Masking {
    pub stdout: Option<Arc<Patterns>>,
    pub stderr: Option<Arc<Patterns>>,
}

impl Supervisor {
    pub fn new() -> Result<Self, RunError> {
        let mut all = FORWARDED.to_vec();
        all.push(SIGCHLD);
        let signals = SignalsInfo::<WithOrigin>::new(all).map_err(RunError::Signals)?;
        Ok(Self { signals })
    }

    /// Start `cmd`, supervise it, and return its exit code (128 + the
    /// signal's number if a signal killed it). `program` names it in
    /// errors.
    pub fn run(
        mut self,
        mut cmd: Command,
        program: &str,
        masking: Masking,
    ) -> Result<i32, RunError> {
        if masking.stdout.is_some() {
            cmd.stdout(Stdio::piped());
        }
        if masking.stderr.is_some() {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| RunError::spawn(program, e))?;
        // The Command holds copies of the values (its environment).
        drop(cmd);
        let pid = Pid::from_raw(child.id() as i32);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let start_pump = |src: Box<dyn Read + Send>, dst: Box<dyn Write + Send>, p| {
            let tx = done_tx.clone();
            std::thread::spawn(move || {
                pump(src, dst, p);
                let _ = tx.send(());
            });
        };
        let mut pumps = 0;
        if let (Some(src), Some(p)) = (child.stdout.take(), masking.stdout) {
            start_pump(Box::new(src), Box::new(std::io::stdout()), p);
            pumps += 1;
        }
        if let (Some(src), Some(p)) = (child.stderr.take(), masking.stderr) {
            start_pump(Box::new(src), Box::new(std::io::stderr()), p);
            pumps += 1;
        }
        drop(done_tx);
        let pid1 = std::process::id() == 1;
        let mut code = None;
        for info in self.signals.forever() {
            if info.signal == SIGCHLD {
                if let Some(c) = reap(pid, pid1) {
                    code = Some(c);
                    break;
                }
            } else if should_forward(info.signal, &info.cause)
                && let Ok(sig) = Signal::try_from(info.signal)
            {
                // ESRCH: it exited meanwhile; SIGCHLD follows.
                let _ = kill(pid, sig);
            }
        }
        let code = code.unwrap_or(125);
        let deadline = Instant::now() + DRAIN_GRACE;
        for _ in 0..pumps {
            let left = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        Ok(code)
    }
}

/// Forward `signal`? Not a SIGINT or SIGQUIT the kernel (the terminal)
/// sent while the child shares our foreground process group: it has had
/// that one already.
fn should_forward(signal: i32, cause: &Cause) -> bool {
    if (signal == SIGINT || signal == SIGQUIT) && *cause == Cause::Kernel {
        return !child_in_terminal_foreground();
    }
    true
}

/// The child runs in our process group; is that group the foreground one
/// of our controlling terminal?
fn child_in_terminal_foreground() -> bool {
    match std::fs::File::open("/dev/tty") {
        Ok(tty) => tcgetpgrp(&tty).is_ok_and(|fg| fg == getpgrp()),
        Err(_) => false,
    }
}

/// Collect exited children without blocking: only ours normally, every
/// one as PID 1 (orphans are re-parented to us there, and nobody else
/// would reap them). Returns our child's exit code once it has exited.
fn reap(child: Pid, pid1: bool) -> Option<i32> {
    let target = if pid1 { None } else { Some(child) };
    loop {
        match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if p == child => return Some(c),
            Ok(WaitStatus::Signaled(p, s, _)) if p == child => return Some(128 + s as i32),
            Ok(WaitStatus::StillAlive) => return None,
            // Another (orphaned) process reaped, or a stop/continue.
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            // No child left at all: ours is gone without a status we saw.
            Err(_) => return Some(125),
        }
    }
}

/// Copy one output stream through a masker, writing each piece as soon as
/// it is masked. A reader that goes away (EPIPE) stops the writing, not
/// the reading: the command must not block on a full pipe.
fn pump(mut src: impl Read, mut dst: impl Write, patterns: Arc<Patterns>) {
    let mut m = Masker::new(patterns);
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut out = Zeroizing::new(Vec::with_capacity(CHUNK + 1024));
    let mut writing = true;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        out.clear();
        m.feed(&buf[..n], &mut out);
        if writing && !out.is_empty() {
            writing = dst.write_all(&out).and_then(|_| dst.flush()).is_ok();
        }
    }
    out.clear();
    m.finish(&mut out);
    if writing {
        let _ = dst.write_all(&out).and_then(|_| dst.flush());
    }
}
