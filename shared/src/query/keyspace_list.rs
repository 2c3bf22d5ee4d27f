//! The list of published keyspaces (`GET /v1/keyspaces`), read from the store once per pointer TTL: it is
//! one listing plus one HEAD per keyspace, and anyone may ask for it. A keyspace published meanwhile shows
//! within that TTL, as its pointer would. One caller reads at a time; the callers that waited for that read
//! take its answer, a failure included, so a hung store costs each caller one read's time, not a turn each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;

use crate::error::{Error, Result};
use crate::versions::pointer;

pub(crate) struct KeyspaceList {
    ttl: Duration,
    last: tokio::sync::Mutex<Option<Read>>,
}

/// The last read: when it began and ended, and what it answered.
struct Read {
    started: Instant,
    ended: Instant,
    answer: std::result::Result<Arc<Vec<String>>, Arc<Error>>,
}

impl KeyspaceList {
    pub(crate) fn new(ttl: Duration) -> KeyspaceList {
        KeyspaceList { ttl, last: Default::default() }
    }

    pub(crate) async fn get(&self, store: &dyn ObjectStore) -> Result<Arc<Vec<String>>> {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        if let Some(read) = last.as_ref() {
            let fresh = read.answer.is_ok() && read.started.elapsed() < self.ttl;
            // Ended while this caller waited for the lock: its answer is as new as one of our own.
            if fresh || read.ended > arrived {
                return read.answer.clone().map_err(Error::Shared);
            }
        }
        let started = Instant::now();
        let answer = pointer::list_keyspaces(store).await.map(Arc::new).map_err(Arc::new);
        *last = Some(Read { started, ended: Instant::now(), answer: answer.clone() });
        answer.map_err(Error::Shared)
    }
}
