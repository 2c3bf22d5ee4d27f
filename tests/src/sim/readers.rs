//! Readers: engines with small or large caches doing GET and MGET of present (skewed to a few hot keys)
//! and absent keys, each answer checked against the dataset of the version that gave it. Half of them read
//! through a disk cache tier whose files rot under them (bytes flipped, files truncated or deleted): a
//! tier is trusted no more than the store, so no answer may change.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;

use super::rng::Rng;
use super::world::{KS, World, one_line};

/// An error a faulty store explains (injected, or a keyspace with nothing published yet, or deleted by the
/// operator) is fine; anything else a reader meets is lost or corrupt data.
fn expected_error(e: &cairn_shared::Error) -> bool {
    let text = e.to_string();
    text.contains("injected fault") || matches!(e.root(), cairn_shared::Error::KeyspaceNotFound(_))
}

/// A lookup of a version the operator deleted meanwhile finds its objects gone: not a fault of cairn's.
fn deleted_under_it(w: &World, e: &cairn_shared::Error) -> bool {
    let text = e.to_string();
    matches!(e.kind(), cairn_shared::ErrorKind::DataLoss | cairn_shared::ErrorKind::NotFound)
        && w.demolished.lock().unwrap().iter().any(|v| text.contains(v.as_str()))
}

pub async fn reader(w: Arc<World>, me: u64) {
    let mut rng = Rng::new(w.seed, 600 + me);
    let urls: Vec<String> = w.roots.iter().map(|r| r.url.clone()).collect();
    let roots = w.roots.clone();
    let resolver: cairn_shared::query::RootOpener = Arc::new(move |url: &str| {
        let i = urls
            .iter()
            .position(|u| u == url)
            .ok_or_else(|| cairn_shared::Error::Config(format!("unknown root {url}")))?;
        Ok(roots[i].clone())
    });
    let disk = rng.chance(500).then(|| tempfile::tempdir().unwrap());
    let config = EngineConfig {
        pointer_ttl: w.ttl,
        data_cache_bytes: w.page_cache,
        metadata_cache_bytes: *rng.pick(&[16 << 10, 16 << 20]),
        replicas: w.roots[1..].iter().map(|r| r.url.clone()).collect(),
        disk_cache: disk.as_ref().map(|d| cairn_shared::config::DiskCacheConfig {
            path: d.path().to_path_buf(),
            size: Some(*rng.pick(&[64 << 10, 64 << 20])),
        }),
        ..Default::default()
    };
    let engine = Arc::new(Engine::new(w.roots[0].clone(), config).with_root_opener(resolver));
    let mut seen: Vec<String> = Vec::new();
    while w.running() {
        w.ops.fetch_add(1, Relaxed);
        let op = w.next_op.fetch_add(1, Relaxed);
        // Skewed, as real traffic is: half the keys from a few hot ones, a fifth absent.
        let keys: Vec<String> = (0..*rng.pick(&[1u64, 1, 1, 4, 20]))
            .map(|_| {
                let d = &w.datasets[rng.below(w.datasets.len() as u64) as usize];
                let roll = rng.below(10);
                if roll < 2 || d.keys.is_empty() {
                    // Absent: now and then one a delta deleted (a tombstone over nothing).
                    match rng.chance(500) {
                        true => rng.pick(&w.phantoms).clone(),
                        false => uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string(),
                    }
                } else if roll < 7 {
                    d.keys[rng.below(d.keys.len().min(8) as u64) as usize].clone()
                } else {
                    d.keys[rng.below(d.keys.len() as u64) as usize].clone()
                }
            })
            .collect();
        w.in_flight.lock().unwrap().insert(op, (Instant::now(), format!("reader{me} {keys:?}")));
        let outcome = async {
            let ks = engine.keyspace(KS).await?;
            let mut answers = Vec::new();
            for k in &keys {
                answers.push(engine.lookup(&ks, k).await?);
            }
            Ok::<_, cairn_shared::Error>((ks, answers))
        }
        .await;
        w.in_flight.lock().unwrap().remove(&op);
        match outcome {
            Ok((ks, answers)) => {
                let version = ks.manifest().version.clone();
                if seen.last() != Some(&version) {
                    w.log(&format!("reader{me}"), format!("now reading {version}"));
                    seen.push(version.clone());
                }
                let Some(d) = w.resolve(ks.manifest()).await else {
                    if !w.demolished.lock().unwrap().contains(&version) {
                        w.violation(format!("(b) reader{me}: version {version} holds no dataset this run ingested"));
                    }
                    continue;
                };
                w.answers.fetch_add(answers.len() as u64, Relaxed);
                for (k, got) in keys.iter().zip(answers) {
                    let want = d.rows.get(k);
                    if got.as_deref() != want.map(|v| v.as_slice()) {
                        w.violation(format!("(b) reader{me}: {k} in {version}: got {got:?}, want {want:?}"));
                    }
                }
            }
            Err(e) if expected_error(&e) || deleted_under_it(&w, &e) => {}
            Err(e) => w.violation(format!("(b) reader{me}: {keys:?}: {}", one_line(&e.to_string()))),
        }
        if op.is_multiple_of(8) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(d) = &disk
            && rng.chance(100)
        {
            rot(&w, d.path(), &mut rng);
        }
    }
    w.disk_caches.lock().unwrap().extend(disk);
    // Judged at the end, once every pointer write is in the log (a write lands before it is recorded).
    w.served.lock().unwrap().push((me, seen));
    w.reader_engines.lock().unwrap().push((me, engine));
}

/// Damages one entry file of a disk tier: a flipped byte, a truncation, or deletion.
fn rot(w: &World, dir: &std::path::Path, rng: &mut Rng) {
    let files: Vec<std::path::PathBuf> = walk(dir);
    if files.is_empty() {
        return;
    }
    let f = rng.pick(&files);
    let Ok(mut bytes) = std::fs::read(f) else { return };
    match rng.below(3) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= 1 << rng.below(8);
            let _ = std::fs::write(f, bytes);
        }
        1 => {
            let _ = std::fs::write(f, &bytes[..rng.below(bytes.len() as u64 + 1) as usize]);
        }
        _ => {
            let _ = std::fs::remove_file(f);
        }
    }
    w.disk_rot.fetch_add(1, Relaxed);
}

/// Entry files below `dir` (two levels: the layout directory, then its 256 subdirectories).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for layout in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for sub in std::fs::read_dir(layout.path()).into_iter().flatten().flatten() {
            if sub.file_name().len() == 2 {
                out.extend(std::fs::read_dir(sub.path()).into_iter().flatten().flatten().map(|e| e.path()));
            }
        }
    }
    out
}
