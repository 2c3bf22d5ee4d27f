//! One seed, start to verdict: its own runtime, every actor at once, a watchdog for hangs, the final checks.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::accidents::{builder, demolisher, pid_reuser};
use super::checks::{check_order, checker, final_checks};
use super::readers::reader;
use super::rng::Rng;
use super::world::{make_dataset, open_roots};
use super::writers::{collector, ingester, repairer, rollbacker, twin_ingester};
use crate::chaos::FaultCounts;

/// A lookup slower than this is a hang (faults add at most a few ms per store operation).
const LOOKUP_DEADLINE: Duration = Duration::from_secs(10);

pub struct Outcome {
    pub violations: Vec<String>,
    pub report: String,
    pub published: u64,
    pub answers: u64,
}

/// Runs one seed on its own runtime; a watchdog on this thread reports a lookup past the deadline as a hang
/// (the runtime is then abandoned: a spinning task cannot be stopped).
pub fn run_seed(seed: u64, millis: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let counts = Arc::new(FaultCounts::default());
    let mut rng = Rng::new(seed, 0);
    let mut world = rt.block_on(open_roots(seed, dir.path(), &mut rng, &counts));
    std::fs::create_dir_all(&world.tmp).unwrap();
    world.datasets = (0..3).map(|i| make_dataset(dir.path(), i, &mut rng, None)).collect();
    world.datasets.push(make_dataset(dir.path(), 3, &mut rng, Some(0)));
    world.started = Instant::now();
    world.deadline = world.started + Duration::from_millis(millis);
    let config = format!(
        "seed {seed}: {} store, {} replica root(s), datasets of {:?} rows, TTL {:?}, page cache {} B, gc min age {:?}",
        if seed.is_multiple_of(2) { "local directory" } else { "memory" },
        world.roots.len() - 1,
        world.datasets.iter().map(|d| d.rows.len()).collect::<Vec<_>>(),
        world.ttl,
        world.page_cache,
        world.gc_min_age,
    );
    let w = Arc::new(world);
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let w = w.clone();
        rt.spawn(async move {
            let mut tasks = vec![
                tokio::spawn(twin_ingester(w.clone(), 0, barrier.clone())),
                tokio::spawn(twin_ingester(w.clone(), 1, barrier)),
                tokio::spawn(ingester(w.clone())),
                tokio::spawn(rollbacker(w.clone())),
                tokio::spawn(collector(w.clone())),
                tokio::spawn(repairer(w.clone())),
                tokio::spawn(checker(w.clone())),
                tokio::spawn(demolisher(w.clone())),
                tokio::spawn(builder(w.clone())),
                tokio::spawn(pid_reuser(w.clone())),
                tokio::spawn(super::layers::layerer(w.clone())),
            ];
            for r in 0..2 {
                tasks.push(tokio::spawn(reader(w.clone(), r)));
            }
            for t in tasks {
                if let Err(e) = t.await {
                    w.violation(format!("an actor panicked: {e}"));
                }
            }
            w.log("harness", "actors done".into());
            // Writes of crashed (dropped) callers finish on their own; the log is complete once they have.
            let settle = tokio::time::Instant::now() + Duration::from_secs(10);
            while w.pointer_writes_pending.load(Relaxed) > 0 && tokio::time::Instant::now() < settle {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            check_order(&w);
            final_checks(&w).await;
            w.log("harness", "final checks done".into());
            let _ = done_tx.send(());
        });
    }
    let hard_stop = Instant::now() + Duration::from_millis(millis) + Duration::from_secs(120);
    let mut hung = None;
    loop {
        match done_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        let stuck = w.in_flight.lock().unwrap().values().find(|(t, _)| t.elapsed() > LOOKUP_DEADLINE).cloned();
        if let Some((_, what)) = stuck {
            hung = Some(format!("(c) a lookup has not answered within {LOOKUP_DEADLINE:?}: {what}"));
            break;
        }
        if Instant::now() > hard_stop {
            hung = Some("the simulation did not finish within 2 minutes of its end".to_string());
            break;
        }
    }
    if let Some(h) = &hung {
        w.stop.store(true, Relaxed);
        w.violation(h.clone());
        rt.shutdown_background();
    } else {
        drop(rt);
    }
    let violations = w.violations.lock().unwrap().clone();
    let trace: Vec<String> = w.trace.lock().unwrap().iter().cloned().collect();
    let summary = format!(
        "sim seed={seed} ops={} published={} (layer ops {}) rebuilt={} answers_checked={} disk_rot={} store_ops={} faults={} violations={}",
        w.ops.load(Relaxed),
        w.published.load(Relaxed),
        w.layer_ops.load(Relaxed),
        w.rebuilt.load(Relaxed),
        w.answers.load(Relaxed),
        w.disk_rot.load(Relaxed),
        w.counts.ops.load(Relaxed),
        w.counts.injected(),
        violations.len()
    );
    let report = if violations.is_empty() && std::env::var_os("CAIRN_SIM_TRACE").is_none() {
        summary
    } else {
        format!(
            "{summary}\n{config}\nviolations:\n  {}\nlast operations:\n  {}\nreproduce: CAIRN_SIM_SEED={seed} CAIRN_SIM_MILLIS={millis} cargo test -p cairn-tests --test simulation",
            violations.join("\n  "),
            trace.join("\n  ")
        )
    };
    if hung.is_some() {
        std::mem::forget(dir); // the abandoned runtime may still write there
    }
    Outcome { violations, report, published: w.published.load(Relaxed), answers: w.answers.load(Relaxed) }
}
