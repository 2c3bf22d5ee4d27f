//! Ctrl-C and SIGTERM during a job that writes: the job is stopped (its future dropped: its threads stop and
//! its scratch space is removed once they let go of it) and the command exits saying what was left.

use std::future::Future;

/// A signal that stopped a job, and the exit status it maps to (128 + its number, as shells report).
#[derive(Debug, Clone, Copy)]
pub struct Interrupted {
    pub name: &'static str,
    pub status: u8,
}

/// Runs `job` until it ends or SIGINT/SIGTERM arrives.
pub async fn interruptible<T>(job: impl Future<Output = T>) -> Result<T, Interrupted> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return Ok(job.await); // no signal handling here: the default action applies
    };
    let stop = tokio::select! {
        done = job => return Ok(done),
        _ = int.recv() => Interrupted { name: "SIGINT", status: 130 },
        _ = term.recv() => Interrupted { name: "SIGTERM", status: 143 },
    };
    // While the job's threads wind down, a second signal ends the process at once (the default action).
    // SAFETY: restoring the default disposition of two signals; no handler runs Rust code for them after.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
    Err(stop)
}
