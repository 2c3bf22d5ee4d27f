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
    tokio::select! {
        done = job => Ok(done),
        _ = int.recv() => Err(Interrupted { name: "SIGINT", status: 130 }),
        _ = term.recv() => Err(Interrupted { name: "SIGTERM", status: 143 }),
    }
}
