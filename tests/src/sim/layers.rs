//! The layer actor: delta publishes (tombstones of phantom keys no dataset holds, so a version answers
//! as the dataset of the base it stacks on) and compactions, crashed now and then, racing every other
//! writer. What they must not lose: a layer a kept version needs (gc), a whole version (a), exact answers
//! (b).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use cairn_ingest::{CompactOptions, InputFormat, NoProgress};
use cairn_shared::format::manifest::Manifest;

use super::rng::Rng;
use super::world::{KS, World, one_line};

pub async fn layerer(w: Arc<World>) {
    let mut rng = Rng::new(w.seed, 900);
    let mut n = 0u64;
    while w.running() {
        tokio::time::sleep(rng.millis(5, 60)).await;
        let _writing = w.writers.read().await;
        w.ops.fetch_add(1, Relaxed);
        let crash = rng.chance(200).then(|| rng.millis(0, 30));
        let compact = rng.chance(350);
        // What is current now answers as a dataset: learnt before a compaction, whose result names it only.
        if let Ok(Some(c)) = cairn_shared::versions::pointer::read(w.clean[0].inner.as_ref(), KS).await
            && let Ok(m) = Manifest::read_top(w.clean[0].inner.as_ref(), KS, &c.pointer.version).await
        {
            w.resolve(&m).await;
        }
        let run = async {
            if compact {
                let mut o = CompactOptions::new(KS, w.roots[0].clone());
                o.threads = 2;
                o.tmp_dir = Some(w.tmp.clone());
                cairn_ingest::compact(o, Arc::new(NoProgress)).await
            } else {
                n += 1;
                let file = w.tmp.parent().expect("seed dir").join(format!("deletes-{n}.txt"));
                let keys: Vec<&String> = (0..1 + rng.below(4)).map(|_| rng.pick(&w.phantoms)).collect();
                let mut body: Vec<String> = keys.iter().map(|k| format!("{k}\n")).collect();
                body.sort();
                body.dedup();
                std::fs::write(&file, body.concat()).expect("keys file");
                let mut o = w.ingest_options(0, None);
                o.inputs = vec![file];
                o.format = Some(InputFormat::Keys);
                o.delta = true;
                cairn_ingest::ingest(o, Arc::new(NoProgress)).await
            }
        };
        let what = if compact { "compact" } else { "delete phantoms" };
        let outcome = match crash {
            Some(after) => match tokio::time::timeout(after, run).await {
                Ok(r) => r,
                Err(_) => {
                    w.log("layerer", format!("{what}: crashed after {after:?}"));
                    continue;
                }
            },
            None => run.await,
        };
        match outcome {
            Ok(report) => {
                w.published.fetch_add(1, Relaxed);
                w.layer_ops.fetch_add(1, Relaxed);
                w.log("layerer", format!("{what}: published {} ({} layers)", report.version, report.layers));
                // Register what it answers as while its layers are surely there (readers resolve it too).
                if let Ok(m) = Manifest::read_top(w.clean[0].inner.as_ref(), KS, &report.version).await
                    && w.resolve(&m).await.is_none()
                    && !w.demolished.lock().unwrap().contains(&report.version)
                {
                    w.log(
                        "layerer",
                        format!("{}: no dataset resolved (its base was replaced meanwhile)", report.version),
                    );
                }
            }
            Err(e) => w.log("layerer", format!("{what}: {}", one_line(&e.to_string()))),
        }
    }
}
