//! The actors that write: two ingests of the same input in lock step, a third of other inputs, rollback,
//! an aggressive gc and repair. Each holds the world's writer lock (shared) per operation.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use cairn_ingest::NoProgress;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::versions::gc::GcOptions;
use cairn_shared::versions::pointer;

use super::rng::Rng;
use super::world::{KS, World, one_line};

/// One ingest, maybe crashed part-way (its future dropped). Returns the version it reported published.
pub async fn ingest_once(w: &World, actor: &str, rng: &mut Rng, d: usize, shards: Option<u32>) -> Option<String> {
    let crash = rng.chance(300).then(|| rng.millis(0, 40));
    w.ops.fetch_add(1, Relaxed);
    let run = cairn_ingest::ingest(w.ingest_options(d, shards), Arc::new(NoProgress));
    let outcome = match crash {
        Some(after) => match tokio::time::timeout(after, run).await {
            Ok(r) => r,
            Err(_) => {
                w.log(actor, format!("dataset {d} shards {shards:?}: crashed after {after:?}"));
                return None;
            }
        },
        None => run.await,
    };
    match outcome {
        Ok(report) => {
            w.published.fetch_add(1, Relaxed);
            w.log(actor, format!("dataset {d} shards {shards:?}: published {}", report.version));
            if d == w.empty() {
                w.violation(format!(
                    "(e) {actor}: an empty input was published over the keyspace as {}",
                    report.version
                ));
            }
            check_published(w, d, &report.version).await;
            Some(report.version)
        }
        Err(e) => {
            w.log(actor, format!("dataset {d} shards {shards:?}: {}", one_line(&e.to_string())));
            None
        }
    }
}

/// (d): a reported publish names a whole version of that dataset.
async fn check_published(w: &World, d: usize, version: &str) {
    match Manifest::read(w.clean[0].inner.as_ref(), KS, version).await {
        Ok(m) if m.source.fingerprint == w.datasets[d].fingerprint && m.rows == w.datasets[d].rows.len() as u64 => {}
        Ok(m) => w.violation(format!(
            "(d) {version} was reported published with {} rows of {}",
            m.rows, m.source.fingerprint
        )),
        Err(e) => {
            // It may have been replaced and collected since; only a version still named by the pointer counts.
            if current_version(w).await.as_deref() == Some(version) {
                w.violation(format!("(d) {version} was reported published but its manifest is unreadable: {e}"));
            }
        }
    }
}

pub async fn current_version(w: &World) -> Option<String> {
    pointer::read(w.clean[0].inner.as_ref(), KS).await.ok().flatten().map(|c| c.pointer.version)
}

/// Two of these run the same ingest at the same moment, round after round: a CI retry, a rerun "from any
/// machine", two `cairn serve FILE` starting together.
pub async fn twin_ingester(w: Arc<World>, me: u64, barrier: Arc<tokio::sync::Barrier>) {
    let mut rng = Rng::new(w.seed, 100 + me);
    let mut round = 0u64;
    loop {
        let mut shared = Rng::new(w.seed, 1000 + round);
        tokio::time::sleep(shared.millis(0, 150)).await;
        // The leader decides for both whether there is another round, so neither waits for the other forever.
        if barrier.wait().await.is_leader() {
            w.twins_stop.store(!w.running(), Relaxed);
        }
        barrier.wait().await;
        if w.twins_stop.load(Relaxed) {
            return;
        }
        let d = w.pick_dataset(&mut shared);
        let shards = *shared.pick(&[None, Some(1), Some(2), Some(5), Some(16), Some(48)]);
        {
            let _writing = w.writers.read().await;
            ingest_once(&w, &format!("twin{me}"), &mut rng, d, shards).await;
        }
        round += 1;
    }
}

pub async fn ingester(w: Arc<World>) {
    let mut rng = Rng::new(w.seed, 200);
    while w.running() {
        let d = w.pick_dataset(&mut rng);
        let shards = *rng.pick(&[None, Some(1), Some(3), Some(7), Some(64)]);
        {
            let _writing = w.writers.read().await;
            ingest_once(&w, "ingester", &mut rng, d, shards).await;
        }
        tokio::time::sleep(rng.millis(0, 200)).await;
    }
}

pub async fn rollbacker(w: Arc<World>) {
    let mut rng = Rng::new(w.seed, 300);
    while w.running() {
        tokio::time::sleep(rng.millis(20, 150)).await;
        let _writing = w.writers.read().await;
        w.ops.fetch_add(1, Relaxed);
        let primary = w.roots[0].inner.clone();
        let to_random = rng.chance(300);
        let crash = rng.chance(200).then(|| rng.millis(0, 5));
        let roots = w.roots.clone();
        let run = async {
            let to = if to_random {
                let versions = cairn_shared::format::manifest::list_versions(primary.as_ref(), KS).await?;
                versions.get(rng.below(versions.len() as u64) as usize).cloned()
            } else {
                None
            };
            let open = |url: &str| {
                roots.iter().find(|r| r.url == url).cloned().ok_or_else(|| cairn_shared::Error::Config(url.into()))
            };
            let done = cairn_shared::versions::rollback::rollback(&roots[0], KS, to.as_deref(), &open).await?;
            Ok::<_, cairn_shared::Error>(format!("{} -> {}", done.from, done.to))
        };
        let outcome = match crash {
            Some(after) => tokio::time::timeout(after, run).await.unwrap_or_else(|_| Ok("crashed".into())),
            None => run.await,
        };
        w.log(
            "rollback",
            match outcome {
                Ok(s) => s,
                Err(e) => one_line(&e.to_string()),
            },
        );
    }
}

pub async fn collector(w: Arc<World>) {
    let mut rng = Rng::new(w.seed, 400);
    while w.running() {
        tokio::time::sleep(rng.millis(30, 200)).await;
        let _writing = w.writers.read().await;
        w.ops.fetch_add(1, Relaxed);
        let opts = GcOptions { keep: 0, min_age: w.gc_min_age, dry_run: false };
        let outcome = cairn_shared::versions::gc::collect(&w.roots, KS, &opts).await;
        w.log(
            "gc",
            match outcome {
                Ok(r) => format!("deleted {:?}, kept {:?}", r.deleted_versions, r.kept_versions),
                Err(e) => one_line(&e.to_string()),
            },
        );
    }
}

pub async fn repairer(w: Arc<World>) {
    let mut rng = Rng::new(w.seed, 500);
    while w.running() {
        tokio::time::sleep(rng.millis(50, 300)).await;
        let _writing = w.writers.read().await;
        w.ops.fetch_add(1, Relaxed);
        let primary = w.roots[0].inner.clone();
        let outcome = async {
            let cur =
                pointer::read(primary.as_ref(), KS).await?.ok_or(cairn_shared::Error::KeyspaceNotFound(KS.into()))?;
            // As `cairn repair` reads it: part by part from the roots when the primary's copy is not whole.
            let (version, vouched) = (&cur.pointer.version, cur.pointer.manifest.as_ref());
            let m = cairn_shared::versions::manifest_copies::read_whole(&w.roots, KS, version, vouched).await?;
            cairn_shared::versions::repair::repair(&w.roots, &m).await
        }
        .await;
        w.log(
            "repair",
            match outcome {
                Ok(r) => format!("copied {}, metadata {}", r.copied, r.metadata_copied),
                Err(e) => one_line(&e.to_string()),
            },
        );
    }
}
