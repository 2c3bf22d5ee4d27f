//! Keeping a checkpoint owned while a version is being written: a heartbeat that renews its lease, and a
//! stop flag that ends the writers and the heartbeat when the job ends or loses the checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::checkpoint::Owned;
use crate::error::IngestError;

/// Set when the ingest future is dropped or done: writer threads and the heartbeat stop.
#[derive(Default)]
pub struct Stop {
    pub flag: Arc<AtomicBool>,
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
    }
}

/// Renews the checkpoint's lease every third of it until `stop`; aborted when dropped.
pub fn heartbeat(
    owned: Arc<tokio::sync::Mutex<Owned>>,
    primary: Arc<dyn object_store::ObjectStore>,
    stop: Arc<AtomicBool>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let every = owned.lock().await.lease() / 3;
        loop {
            tokio::time::sleep(every).await;
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = owned.lock().await.save(primary.as_ref()).await {
                tracing::warn!(error = %e, "checkpoint heartbeat failed");
                if matches!(e, IngestError::LostOwnership(_)) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }))
}

pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
