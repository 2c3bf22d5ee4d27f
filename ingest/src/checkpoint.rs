//! Ingest checkpoints live in the store next to the keyspace (not on the machine), so a crashed ingest can be
//! resumed from anywhere: rerunning the same command on the same input finds it by the ingest id (a hash of
//! the input fingerprint and every option that shapes the output) and skips the shards it lists.

use std::collections::BTreeMap;

use cairn_shared::layout;
use cairn_shared::manifest::ShardEntry;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::IngestError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub ingest_id: String,
    pub keyspace: String,
    /// The version this ingest writes; a resumed run keeps it so finished shards stay valid.
    pub version: String,
    /// The version that was current when the ingest started: publishing fails if someone else published
    /// meanwhile (one winner per race).
    pub base_version: Option<String>,
    pub started_at: String,
    /// Shards whose objects are written under every root.
    pub done: BTreeMap<u32, ShardEntry>,
}

impl Checkpoint {
    pub async fn load(store: &dyn ObjectStore, ks: &str, ingest_id: &str) -> Result<Option<Checkpoint>, IngestError> {
        let path = layout::checkpoint_path(ks, ingest_id);
        match store.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await?;
                // An unreadable checkpoint only costs a restart from scratch.
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn save(&self, store: &dyn ObjectStore) -> Result<(), IngestError> {
        let body = serde_json::to_vec_pretty(self).expect("checkpoint serializes");
        store.put(&layout::checkpoint_path(&self.keyspace, &self.ingest_id), PutPayload::from(body)).await?;
        Ok(())
    }

    pub async fn delete(&self, store: &dyn ObjectStore) -> Result<(), IngestError> {
        match store.delete(&layout::checkpoint_path(&self.keyspace, &self.ingest_id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
