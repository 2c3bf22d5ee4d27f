//! The list of published keyspaces (`GET /v1/keyspaces`), read from the store once per pointer TTL: it is
//! one listing plus one HEAD per keyspace, and anyone may ask for it. A keyspace published meanwhile shows
//! within that TTL, as its pointer would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;

use crate::error::Result;
use crate::versions::pointer;

pub(crate) struct KeyspaceList {
    ttl: Duration,
    /// The last list and when its read began; the lock makes concurrent callers share one read.
    last: tokio::sync::Mutex<Option<(Instant, Arc<Vec<String>>)>>,
}

impl KeyspaceList {
    pub(crate) fn new(ttl: Duration) -> KeyspaceList {
        KeyspaceList { ttl, last: Default::default() }
    }

    pub(crate) async fn get(&self, store: &dyn ObjectStore) -> Result<Arc<Vec<String>>> {
        let mut last = self.last.lock().await;
        if let Some((at, list)) = last.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(list.clone());
        }
        let started = Instant::now();
        let list = Arc::new(pointer::list_keyspaces(store).await?);
        *last = Some((started, list.clone()));
        Ok(list)
    }
}
