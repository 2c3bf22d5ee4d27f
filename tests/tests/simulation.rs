//! The seeded fault-and-interleaving simulation (tests/src/sim, docs/simulation.md).
//!
//! `CAIRN_SIM_SEED=S` runs one seed; `CAIRN_SIM_SEEDS=N` (default 8) and `CAIRN_SIM_FIRST=S` (default 1) a
//! range; `CAIRN_SIM_MILLIS` (default 2500) is each seed's length. `scripts/soak.sh N` runs N minutes of it.

use cairn_tests::sim::run_seed;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn seeded_simulation_keeps_every_invariant() {
    let millis = env_u64("CAIRN_SIM_MILLIS", 2500);
    let seeds: Vec<u64> = match std::env::var("CAIRN_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => {
            let first = env_u64("CAIRN_SIM_FIRST", 1);
            (first..first + env_u64("CAIRN_SIM_SEEDS", 8)).collect()
        }
    };
    let (mut failed, mut published, mut answers) = (Vec::new(), 0, 0);
    for seed in seeds {
        let outcome = run_seed(seed, millis);
        println!("{}", outcome.report);
        if !outcome.violations.is_empty() {
            failed.push(seed);
        }
        published += outcome.published;
        answers += outcome.answers;
    }
    assert!(failed.is_empty(), "invariants violated for seeds {failed:?} (reports above)");
    // Not vacuous: versions were published and readers checked answers against them.
    assert!(published > 0 && answers > 0, "nothing exercised: {published} publishes, {answers} answers");
}
