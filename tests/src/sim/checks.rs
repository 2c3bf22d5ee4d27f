//! The invariants judged during and after a seed's run.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::versions::pointer;
use object_store::ObjectStoreExt;

use super::world::{KS, World};

/// (b), the order part: the versions each reader served follow the pointer's history.
pub fn check_order(w: &World) {
    let history = w.pointer_log.lock().unwrap().clone();
    for (me, seen) in w.served.lock().unwrap().iter() {
        let mut at = 0usize;
        for v in seen {
            match history[at..].iter().position(|h| h == v) {
                Some(i) => at += i,
                None => {
                    w.violation(format!("(b) reader{me} moved back: it served {seen:?}, the pointer went {history:?}"));
                    break;
                }
            }
        }
    }
}

/// (a), continuously: what the primary pointer names is whole somewhere. A check the pointer moved under is
/// not judged. And (i): no replica's pointer copy moves back.
pub async fn checker(w: std::sync::Arc<World>) {
    let mut copies: Vec<Option<pointer::Pointer>> = vec![None; w.clean.len()];
    while w.running() {
        tokio::time::sleep(Duration::from_millis(15)).await;
        if let Some(problem) = check_current(&w).await {
            w.violation(format!("(a) {problem}"));
        }
        check_copies(&w, &mut copies).await;
    }
}

/// (i): each replica's pointer copy is one a reader holding the last copy seen there would take
/// ([`pointer::Pointer::supersedes`]); a copy deleted with its keyspace starts over.
async fn check_copies(w: &World, seen: &mut [Option<pointer::Pointer>]) {
    for (i, root) in w.clean.iter().enumerate().skip(1) {
        let Ok(now) = pointer::read(root.inner.as_ref(), KS).await else { continue };
        let now = now.map(|c| c.pointer);
        if let (Some(before), Some(after)) = (&seen[i], &now)
            && !after.supersedes(before)
        {
            w.violation(format!(
                "(i) replica {i}'s pointer copy moved back: from {} (seq {}) to {} (seq {})",
                before.version, before.seq, after.version, after.seq
            ));
        }
        seen[i] = now;
    }
}

pub async fn check_current(w: &World) -> Option<String> {
    let primary = w.clean[0].inner.as_ref();
    let before = pointer::read(primary, KS).await.ok()??;
    let version = &before.pointer.version;
    let mut problem = None;
    let mut manifest = None;
    for root in &w.clean {
        if let Ok(m) = Manifest::read(root.inner.as_ref(), KS, version).await {
            manifest = Some(m);
            break;
        }
    }
    // What the current version answers as, learnt while what it stacks on or compacted is surely there
    // (gc keeps a replaced version at least 2 × TTL): a reader may first see it later.
    if let Some(m) = &manifest {
        w.resolve(m).await;
    }
    // A layered version: every layer it stacks on, too.
    let mut layers = Vec::new();
    for l in manifest.iter().flat_map(|m| m.layers.iter()) {
        let mut found = None;
        for root in &w.clean {
            if let Ok(m) = Manifest::read(root.inner.as_ref(), KS, &l.version).await {
                found = Some(m);
                break;
            }
        }
        match found {
            Some(m) => layers.push(m),
            None => problem = Some(format!("CURRENT names {version}, whose layer {} no root holds", l.version)),
        }
    }
    match &manifest {
        None => problem = Some(format!("CURRENT names {version}, whose manifest no root holds")),
        Some(m) => {
            for s in m.shards.iter().chain(layers.iter().flat_map(|l| l.shards.iter())) {
                let mut whole = false;
                for root in &w.clean {
                    if root.inner.head(&s.path.as_str().into()).await.is_ok_and(|meta| meta.size == s.bytes) {
                        whole = true;
                        break;
                    }
                }
                if !whole {
                    problem = Some(format!("CURRENT names {version}, whose shard {} no root holds whole", s.path));
                    break;
                }
            }
        }
    }
    let after = pointer::read(primary, KS).await.ok()??;
    (after.tag.e_tag == before.tag.e_tag && after.pointer == before.pointer).then_some(problem?)
}

/// The final checks, faults off: the pointer names a whole version and a fresh reader answers every key;
/// every reader that ran serves what the pointer names once its TTL has passed (a keyspace deleted and
/// rebuilt included); no scratch space is left behind.
pub async fn final_checks(w: &World) {
    for c in &w.chaos {
        c.set_enabled(false);
    }
    if let Some(problem) = check_current(w).await {
        w.violation(format!("(a) at the end: {problem}"));
    }
    readers_follow_the_pointer(w).await;
    scratch_is_gone(w).await;
    let engine = Engine::new(w.clean[0].clone(), EngineConfig::default());
    let Ok(ks) = engine.keyspace(KS).await else { return };
    let Some(d) = w.resolve(ks.manifest()).await else {
        return w.violation(format!("at the end: {} holds no dataset of this run", ks.manifest().version));
    };
    for k in &d.keys {
        match engine.lookup(&ks, k).await {
            Ok(Some(v)) if v.as_ref() == d.rows[k].as_slice() => {}
            other => {
                return w.violation(format!("at the end: {k} in {}: {other:?}", ks.manifest().version));
            }
        }
    }
}

/// (f): a running reader follows the pointer, whatever happened to the keyspace meanwhile (`refresh`
/// stands for its TTL passing).
async fn readers_follow_the_pointer(w: &World) {
    let current = pointer::read(w.clean[0].inner.as_ref(), KS).await.ok().flatten().map(|c| c.pointer.version);
    let engines = w.reader_engines.lock().unwrap().clone();
    for (me, engine) in engines {
        engine.refresh();
        let served = engine.keyspace(KS).await.map(|k| k.manifest().version.clone()).ok();
        if served != current {
            w.violation(format!(
                "(f) reader{me} serves {served:?} though the pointer names {current:?} (the keyspace was rebuilt {} times)",
                w.rebuilt.load(Relaxed)
            ));
        }
    }
}

/// (h): every ingest and build, crashed or not, removed its scratch space (given time for the threads of
/// crashed ones to end).
async fn scratch_is_gone(w: &World) {
    let left = || -> Vec<String> {
        std::fs::read_dir(&w.tmp)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    for _ in 0..200 {
        if left().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.violation(format!("(h) scratch space left behind in the temp dir: {:?}", left()));
}
