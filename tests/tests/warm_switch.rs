//! Warm version switches (`CAIRN_WARM_SWITCH`): when a refresh finds a newly published version, the keys
//! recently asked are looked up in it before readers move, so the first lookups after a publish cost no
//! store reads; with warming off the same lookups read their index pieces and blocks from the store.

use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_tests::{example_data, ingest, read_dataset};

const TTL: Duration = Duration::from_secs(5);

/// Store GETs the hot keys cost right after a switch, and the switches warmed; None when the refresh did
/// not land while the old version could still answer (a machine too loaded to reach it within 2 × TTL: the
/// switch is then not warmed, by design).
async fn after_a_switch(warm: bool) -> Option<(u64, u64)> {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store").to_str().unwrap()).unwrap();
    ingest(&example_data(), "default", &store, Some(8)).await.unwrap();
    let rows = read_dataset(&example_data());
    let hot: Vec<&(String, Vec<u8>)> = rows.iter().step_by(997).take(9).collect();
    let config =
        EngineConfig { pointer_ttl: TTL, warm_switch_bytes: if warm { 64 << 20 } else { 0 }, ..Default::default() };
    let e = Engine::new(store.clone(), config);
    // Hot keys, asked often enough that every one is sampled (one lookup in 8; 9 keys: all residues).
    for _ in 0..16 {
        for (k, v) in &hot {
            assert_eq!(e.get("default", k).await.unwrap().as_deref(), Some(v.as_slice()));
        }
    }
    let old = e.served()[0].version.clone();
    // A new version with another shard count: what the old one cached is of no use to it.
    ingest(&example_data(), "default", &store, Some(4)).await.unwrap();
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    // This lookup refreshes the pointer (and warms, when on); the old version still answers others meanwhile.
    e.get("default", &hot[0].0).await.unwrap();
    assert_ne!(e.served()[0].version, old, "the refresh found the new version");
    if warm && e.stats().switches.warmed == 0 {
        return None;
    }
    let before = e.counters().object_gets;
    for (k, v) in &hot {
        assert_eq!(e.get("default", k).await.unwrap().as_deref(), Some(v.as_slice()), "{k} in the new version");
    }
    Some((e.counters().object_gets - before, e.stats().switches.warmed))
}

async fn measured(warm: bool) -> (u64, u64) {
    for _ in 0..3 {
        if let Some(m) = after_a_switch(warm).await {
            return m;
        }
    }
    panic!("the refresh never landed within twice the pointer TTL");
}

#[tokio::test]
async fn a_warmed_switch_costs_the_hot_keys_no_store_read() {
    let (cold, switches) = measured(false).await;
    assert_eq!(switches, 0, "warming off");
    assert!(cold >= 5, "cold after a switch, the hot keys read their pieces and blocks ({cold} GETs)");
    let (warm, switches) = measured(true).await;
    assert_eq!(switches, 1, "one switch, warmed");
    // At most a pointer re-read, should the TTL pass again on a slow machine.
    assert!(warm <= 1, "warmed, the hot keys cost {warm} store reads (cold: {cold})");
}
