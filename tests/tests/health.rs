//! Health (GREEN / YELLOW / RED) and repair, through the library, the CLI (exit codes) and `GET /v1/health`,
//! with copies deleted and corrupted on disk; repair runs while lookups are being served.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::versions::health::{self, CopyState, Status};
use cairn_shared::{Engine, format::manifest};
use cairn_tests::process::{cairn, text};
use cairn_tests::{TestServer, example_data, read_dataset};

/// `n` local roots under `dir`: their paths and stores, the primary first.
fn local_roots(dir: &Path, n: usize) -> (Vec<PathBuf>, Vec<Store>) {
    let paths: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("root{i}"))).collect();
    let roots = paths.iter().map(|p| Store::open(p.to_str().unwrap()).unwrap()).collect();
    (paths, roots)
}

/// Ingests `input` into keyspace "default" on every root (`shards` of them, or a delta layer over what is
/// published when `shards` is None).
async fn ingest_into(roots: &[Store], input: PathBuf, shards: Option<u32>) -> cairn_ingest::IngestReport {
    let mut opts = IngestOptions::new(input, "default", roots[0].clone());
    opts.replicas = roots[1..].to_vec();
    opts.shards = shards;
    opts.delta = shards.is_none();
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_yellow_and_red_and_repair_restores_green() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, roots) = local_roots(dir.path(), 3);
    let report = ingest_into(&roots, example_data(), Some(4)).await;
    let m = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &report.version).await.unwrap();
    let store_arg = paths[0].to_str().unwrap().to_string();
    let cli_health = |deep: bool| {
        let mut args = vec!["health", "-k", "default", "--store", &store_arg];
        if deep {
            args.push("--deep");
        }
        let out = cairn(&args, None, &[]);
        (out.status.code(), text(&out.stdout))
    };
    assert_eq!(health::check(&roots, &m, true).await.status, Status::Green);
    let (code, out) = cli_health(false);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("GREEN") || out.contains("Green"), "{out}");

    // One copy of shard 0 missing; one copy of shard 1 corrupted in place (same size).
    std::fs::remove_file(paths[1].join(&m.shards[0].path)).unwrap();
    let victim = paths[2].join(&m.shards[1].path);
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();

    let shallow = health::check(&roots, &m, false).await;
    assert_eq!(shallow.status, Status::Yellow);
    assert_eq!(shallow.shards[0].copies[1].state, CopyState::Missing);
    assert_eq!(shallow.shards[1].good, 3, "a same-size corruption needs --deep");
    let deep = health::check(&roots, &m, true).await;
    assert!(matches!(deep.shards[1].copies[2].state, CopyState::Corrupt { .. }), "{:?}", deep.shards[1]);
    let (code, out) = cli_health(true);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("shard 00000") && out.contains("Missing") && out.contains("shard 00001"), "{out}");

    // The HTTP route says the same (200 while YELLOW).
    let server = TestServer::start(roots[0].clone(), EngineConfig { deep_health: true, ..Default::default() }).await;
    let r = reqwest::get(server.url("/v1/health?deep=true")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "YELLOW");

    // Repair while lookups run: every answer stays right, and the keyspace is GREEN again.
    let engine = Arc::new(Engine::new(roots[0].clone(), EngineConfig { data_cache_bytes: 0, ..Default::default() }));
    let rows = read_dataset(&example_data());
    let reader = {
        let (engine, rows) = (engine.clone(), rows.clone());
        tokio::spawn(async move {
            for (k, v) in rows.iter().step_by(3) {
                assert_eq!(engine.get("default", k).await.unwrap().as_deref(), Some(v.as_slice()));
            }
        })
    };
    // Replica 1 also lost its pointer copy (what its readers fall back to): repair writes it again.
    std::fs::remove_file(paths[1].join("keyspace=default").join(cairn_shared::format::layout::POINTER)).unwrap();
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("copied 2 shard copies and 1 manifest/pointer copies"), "{}", text(&out.stdout));
    let copy = cairn_shared::versions::pointer::read(roots[1].inner.as_ref(), "default").await.unwrap().unwrap();
    assert_eq!(copy.pointer.version, report.version);
    reader.await.unwrap();
    assert_eq!(health::check(&roots, &m, true).await.status, Status::Green);
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert!(text(&out.stdout).contains("copied 0 shard copies and 0"), "repair is idempotent: {}", text(&out.stdout));

    // Every copy of shard 3 gone: RED, 503, exit 4, and repair cannot invent data.
    for p in &paths {
        std::fs::remove_file(p.join(&m.shards[3].path)).unwrap();
    }
    assert_eq!(cli_health(false).0, Some(4));
    let r = reqwest::get(server.url("/v1/health?shards=true")).await.unwrap();
    assert_eq!(r.status(), 503);
    // The probe answers from memory: the engine serves the keyspace, whatever a shard's copies say.
    assert_eq!(reqwest::get(server.url("/v1/health")).await.unwrap().status(), 200);
    let repaired = cairn_shared::versions::repair::repair(&roots, &m).await.unwrap();
    assert_eq!(repaired.unrecoverable, vec![3]);
}

/// A version with a delta layer is as healthy as its worst layer, everywhere health is asked: a base
/// layer's shard lost from every root is RED over HTTP too, and a base layer whose manifest is lost from
/// every root is reported RED (with what each root holds), not an error that hides the rest of the report;
/// repair goes on past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layered_version_is_as_healthy_as_its_worst_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, roots) = local_roots(dir.path(), 2);
    let base = ingest_into(&roots, example_data(), Some(4)).await;
    let rows = read_dataset(&example_data());
    let changed = dir.path().join("delta.txt");
    let body: String = rows.iter().take(50).map(|(k, _)| format!("{k} changed\n")).collect();
    std::fs::write(&changed, body).unwrap();
    let top = ingest_into(&roots, changed, None).await;
    let m = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &top.version).await.unwrap();
    let b = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &base.version).await.unwrap();
    assert_eq!(m.layers.len(), 1);
    let store_arg = paths[0].to_str().unwrap().to_string();
    let server = TestServer::start(roots[0].clone(), EngineConfig { deep_health: true, ..Default::default() }).await;
    let shards_report = || async {
        let r = reqwest::get(server.url("/v1/health?shards=true")).await.unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(shards_report().await.0, 200);

    // The primary's copy of the base layer's manifest changed but still parsing as that version: not the
    // copy the version records, so YELLOW, and repair copies the intact one over it (never the reverse).
    let base_manifest = |i: usize| paths[i].join(b.path().as_ref());
    let intact = std::fs::read(base_manifest(0)).unwrap();
    let text_of = String::from_utf8(intact.clone()).unwrap();
    let rows = format!("\"rows\": {}", b.rows);
    assert!(text_of.contains(&rows), "{text_of}");
    std::fs::write(base_manifest(0), text_of.replacen(&rows, &format!("\"rows\": {}", b.rows + 1), 1)).unwrap();
    let report = health::check_version(&roots, &m, false).await;
    assert_eq!(report.status, Status::Yellow, "{report:?}");
    assert!(matches!(report.layers[0].manifest[0].state, CopyState::Corrupt { .. }), "{:?}", report.layers[0]);
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(std::fs::read(base_manifest(1)).unwrap(), intact, "the intact copy was kept");
    assert_eq!(std::fs::read(base_manifest(0)).unwrap(), intact, "the changed copy was replaced");

    // Every copy of one of the base layer's shards gone: lookups of its keys fail, so the keyspace is RED.
    for p in &paths {
        std::fs::remove_file(p.join(&b.shards[2].path)).unwrap();
    }
    let (code, body) = shards_report().await;
    assert_eq!((code, &body["status"]), (503, &serde_json::json!("RED")), "{body}");
    let out = cairn(&["health", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(4), "{}{}", text(&out.stdout), text(&out.stderr));

    // The base layer's manifest gone from every root as well: still a report, RED, naming that layer.
    for p in &paths {
        std::fs::remove_file(p.join(b.path().as_ref())).unwrap();
    }
    let report = health::check_version(&roots, &m, false).await;
    assert_eq!(report.status, Status::Red);
    assert_eq!(report.layers.len(), 1);
    assert_eq!(report.layers[0].version, base.version);
    assert!(report.layers[0].manifest.iter().all(|c| c.state == CopyState::Missing), "{:?}", report.layers[0]);
    let out = cairn(&["health", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(4), "{}{}", text(&out.stdout), text(&out.stderr));
    // Repair still mends the layer it can: a lost copy of the delta's shard comes back.
    std::fs::remove_file(paths[1].join(&m.shards[0].path)).unwrap();
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert!(paths[1].join(&m.shards[0].path).exists(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("no root holds an intact copy of the manifest"), "{}", text(&out.stdout));
    assert_eq!(out.status.code(), Some(1));
}

/// An older layer whose manifest parts are spread over the roots (the top level on one, a group on the
/// other) is read as readers read it, part by part, and repair makes every root whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_layer_read_from_parts_on_different_roots() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, roots) = local_roots(dir.path(), 2);
    let base = ingest_into(&roots, example_data(), Some(manifest::GROUP_ABOVE as u32 + 1)).await;
    let changed = dir.path().join("delta.txt");
    let rows = read_dataset(&example_data());
    std::fs::write(&changed, rows.iter().take(20).map(|(k, _)| format!("{k} changed\n")).collect::<String>()).unwrap();
    let top = ingest_into(&roots, changed, None).await;
    let m = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &top.version).await.unwrap();
    let b = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &base.version).await.unwrap();
    let group = cairn_shared::format::layout::group_path("default", &base.version, 0);
    std::fs::remove_file(paths[0].join(group.as_ref())).unwrap();
    std::fs::remove_file(paths[1].join(b.path().as_ref())).unwrap();

    let report = health::check_version(&roots, &m, false).await;
    assert_eq!(report.status, Status::Yellow, "{:?}", report.layers[0].manifest);
    assert_eq!(report.layers[0].shards.len(), b.shards.len(), "the layer was read: its shards are checked");
    let store_arg = paths[0].to_str().unwrap().to_string();
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(paths[0].join(group.as_ref()).exists() && paths[1].join(b.path().as_ref()).exists());
    assert_eq!(health::check_version(&roots, &m, true).await.status, Status::Green);

    // Every group damaged in place on the root that has the top level, the top level gone from the other:
    // each part must come from the root whose copy is the one the top level lists, whichever is asked first.
    let groups: Vec<PathBuf> = (0..)
        .map(|g| paths[0].join(cairn_shared::format::layout::group_path("default", &base.version, g).as_ref()))
        .take_while(|p| p.exists())
        .collect();
    assert!(groups.len() > 1, "{groups:?}");
    for g in &groups {
        let mut bytes = std::fs::read(g).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(g, bytes).unwrap();
    }
    std::fs::remove_file(paths[1].join(b.path().as_ref())).unwrap();
    let report = health::check_version(&roots, &m, false).await;
    assert_eq!(report.status, Status::Yellow, "{:?}", report.layers[0].manifest);
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(health::check_version(&roots, &m, true).await.status, Status::Green);
    for g in &groups {
        let other = paths[1].join(g.strip_prefix(&paths[0]).unwrap());
        assert_eq!(std::fs::read(g).unwrap(), std::fs::read(other).unwrap(), "{} repaired", g.display());
    }
}

/// Every object a root's manifest copy is made of counts, not only its top level: a replica that lost a
/// group (or holds a damaged one) serves nothing from it when the primary fails, so health must not say
/// GREEN, must name the object, and repair must bring it back; a group with no intact copy on any root is
/// RED. The same holds for an older layer's groups and for a delta layer's key filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_part_of_each_roots_manifest_copy_is_checked() {
    use cairn_shared::format::layout;
    let dir = tempfile::tempdir().unwrap();
    let (paths, roots) = local_roots(dir.path(), 2);
    let base = ingest_into(&roots, example_data(), Some(manifest::GROUP_ABOVE as u32 + 1)).await;
    let m = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &base.version).await.unwrap();
    assert_eq!(health::check(&roots, &m, true).await.status, Status::Green);
    let group = |g: u32| layout::group_path("default", &base.version, g);
    let on = |root: usize, p: &object_store::path::Path| paths[root].join(p.as_ref());
    let flip = |file: PathBuf| {
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
    };

    // The replica's copy of group 1 gone: YELLOW, naming it, shallow or deep.
    std::fs::remove_file(on(1, &group(1))).unwrap();
    for deep in [false, true] {
        let report = health::check(&roots, &m, deep).await;
        assert_eq!(report.status, Status::Yellow, "deep {deep}: {:?}", report.manifest);
        assert_eq!(report.manifest[0].state, CopyState::Ok);
        assert_eq!(report.manifest[1].state, CopyState::Missing, "{:?}", report.manifest);
        assert_eq!(report.manifest[1].part.as_deref(), Some(group(1).as_ref()));
    }
    let store_arg = paths[0].to_str().unwrap().to_string();
    let out = cairn(&["health", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(3), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains(group(1).as_ref()), "{}", text(&out.stdout));

    // The primary's group 0 damaged in place (same size): only a deep check sees it.
    flip(on(0, &group(0)));
    let deep = health::check(&roots, &m, true).await;
    assert!(matches!(deep.manifest[0].state, CopyState::Corrupt { .. }), "{:?}", deep.manifest);
    assert_eq!(deep.manifest[0].part.as_deref(), Some(group(0).as_ref()));
    assert_eq!(deep.status, Status::Yellow, "each group still has an intact copy");
    assert_eq!(health::check(&roots, &m, false).await.manifest[0].state, CopyState::Ok);
    // The CLI reads the manifest as readers do, part by part, so a primary's damaged group is reported (it
    // used to read the primary's copy alone and fail).
    let out = cairn(&["health", "-k", "default", "--store", &store_arg, "--deep"], None, &[]);
    assert_eq!(out.status.code(), Some(3), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains(group(0).as_ref()), "{}", text(&out.stdout));

    // Repair restores both, byte for byte from the intact copy.
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(std::fs::read(on(0, &group(0))).unwrap(), std::fs::read(on(1, &group(0))).unwrap());
    assert_eq!(std::fs::read(on(0, &group(1))).unwrap(), std::fs::read(on(1, &group(1))).unwrap());
    assert_eq!(health::check(&roots, &m, true).await.status, Status::Green);

    // No intact copy of group 1 anywhere: its shards cannot be found, RED.
    std::fs::remove_file(on(0, &group(1))).unwrap();
    flip(on(1, &group(1)));
    let report = health::check(&roots, &m, true).await;
    assert_eq!(report.status, Status::Red, "{:?}", report.manifest);
    let out = cairn(&["health", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(4), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("RED"), "{}", text(&out.stdout));
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));

    // Layers, in a store of their own: a base of groups and a delta over it, whose key filter counts too.
    let (paths, roots) = local_roots(&dir.path().join("layered"), 2);
    let base = ingest_into(&roots, example_data(), Some(manifest::GROUP_ABOVE as u32 + 1)).await;
    let rows = read_dataset(&example_data());
    let changed = dir.path().join("delta.txt");
    std::fs::write(&changed, rows.iter().take(20).map(|(k, _)| format!("{k} changed\n")).collect::<String>()).unwrap();
    let top = ingest_into(&roots, changed, None).await;
    let m = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &top.version).await.unwrap();
    assert!(m.delta.is_some(), "a delta layer");
    assert_eq!(health::check_version(&roots, &m, true).await.status, Status::Green);
    let base_group = layout::group_path("default", &base.version, 0);
    let filter = layout::filter_path("default", &top.version);
    std::fs::remove_file(paths[1].join(base_group.as_ref())).unwrap();
    std::fs::remove_file(paths[0].join(filter.as_ref())).unwrap();
    let report = health::check_version(&roots, &m, false).await;
    assert_eq!(report.status, Status::Yellow, "{report:?}");
    assert_eq!(report.manifest[0].part.as_deref(), Some(filter.as_ref()), "{:?}", report.manifest);
    assert_eq!(report.layers[0].manifest[1].state, CopyState::Missing, "{:?}", report.layers[0].manifest);
    assert_eq!(report.layers[0].manifest[1].part.as_deref(), Some(base_group.as_ref()));
    let store_arg = paths[0].to_str().unwrap().to_string();
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(paths[1].join(base_group.as_ref()).exists() && paths[0].join(filter.as_ref()).exists());
    assert_eq!(health::check_version(&roots, &m, true).await.status, Status::Green);

    // The delta's filter gone from every root: lookups read the layer without one, so YELLOW, not RED, and
    // repair says it cannot bring it back.
    for p in &paths {
        std::fs::remove_file(p.join(filter.as_ref())).unwrap();
    }
    assert_eq!(health::check_version(&roots, &m, false).await.status, Status::Yellow);
    let engine = Engine::new(roots[0].clone(), EngineConfig::default());
    let (k, _) = &rows[0];
    assert_eq!(engine.get("default", k).await.unwrap().as_deref(), Some(&b"changed"[..]));
    let out = cairn(&["health", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(3), "{}{}", text(&out.stdout), text(&out.stderr));
    let out = cairn(&["repair", "-k", "default", "--store", &store_arg], None, &[]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("no root holds an intact copy"), "{}", text(&out.stdout));
}

/// A primary that lost, or holds a damaged copy of, the published version's manifest top level (where the
/// replicas are listed): health and repair read it from another root, one `--replicas` names or one an
/// earlier version's manifest names, report the primary's copy, and repair restores it. They used to read
/// the primary's copy alone, and so failed ("version not found") on the one root that needed mending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_lost_its_manifest_top_level_is_checked_and_repaired() {
    use cairn_shared::format::layout::manifest_path;
    let dir = tempfile::tempdir().unwrap();
    let (paths, roots) = local_roots(dir.path(), 2);
    let top = |root: usize, v: &str| paths[root].join(manifest_path("default", v).as_ref());
    let (store_arg, replica_arg) = (paths[0].to_str().unwrap().to_string(), paths[1].to_str().unwrap().to_string());
    let run = |cmd: &str, more: &[&str]| {
        let mut args = vec![cmd, "-k", "default", "--store", &store_arg];
        args.extend(more);
        let out = cairn(&args, None, &[]);
        (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };

    // The only version: nothing but --replicas says where the other root is.
    let first = ingest_into(&roots, example_data(), Some(4)).await;
    std::fs::remove_file(top(0, &first.version)).unwrap();
    let (code, out) = run("health", &[]);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("RED") && out.contains("--replicas"), "{out}");
    let (code, out) = run("health", &["--replicas", &replica_arg]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("manifest") && out.contains("Missing"), "{out}");
    let (code, out) = run("repair", &["--replicas", &replica_arg]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(top(0, &first.version)).unwrap(), std::fs::read(top(1, &first.version)).unwrap());
    assert_eq!(run("health", &["--deep"]).0, Some(0));

    // A later version whose top level on the primary parses as its own but lists another replica root: the
    // pointer does not name that copy, so it is not believed (the decoy root is never opened, let alone
    // written), gc refuses to run on it, and repair puts the intact copy back. The first version's manifest
    // names the replica.
    let second = ingest_into(&roots, example_data(), Some(5)).await;
    let decoy = dir.path().join("root9");
    let bytes = String::from_utf8(std::fs::read(top(0, &second.version)).unwrap()).unwrap();
    assert!(bytes.contains("root1"), "{bytes}");
    std::fs::write(top(0, &second.version), bytes.replace("root1", "root9")).unwrap();
    let (code, out) = run("health", &["--deep"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("manifest ") && l.contains("Corrupt")), "{out}");
    let (code, out) = run("gc", &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cairn repair"), "{out}");
    let (code, out) = run("repair", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(top(0, &second.version)).unwrap(), std::fs::read(top(1, &second.version)).unwrap());
    assert_eq!(run("health", &["--deep"]).0, Some(0));
    assert_eq!(run("gc", &[]).0, Some(0));
    assert!(!decoy.exists(), "the decoy root the damaged copy names was opened");
}

/// A replica root removed whole (its directory gone, as when a replica is retired or its disk replaced):
/// health reports it, lookups fail over past it, and `versions` lists from it, all without bringing its
/// directory back; only repair, which writes, creates it. Opening a local root used to create its
/// directory, so any command that read the manifest naming it left an empty one behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_replica_root_that_was_removed_does_not_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, roots) = local_roots(dir.path(), 2);
    ingest_into(&roots, example_data(), Some(4)).await;
    std::fs::remove_dir_all(&paths[1]).unwrap();
    let (store_arg, replica_arg) = (paths[0].to_str().unwrap().to_string(), paths[1].to_str().unwrap().to_string());
    let run = |cmd: &str, store: &str| {
        let out = cairn(&[cmd, "-k", "default", "--store", store], None, &[]);
        (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };

    let (code, out) = run("health", &store_arg);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("Missing"), "{out}");
    assert!(!paths[1].exists(), "health created the removed replica's directory");
    let (code, out) = run("versions", &replica_arg);
    assert!(!paths[1].exists(), "versions created the directory it was pointed at: {code:?} {out}");

    let engine = Engine::new(Store::open(&store_arg).unwrap(), EngineConfig::default());
    for (k, v) in read_dataset(&example_data()).iter().step_by(7) {
        assert_eq!(engine.get("default", k).await.unwrap().as_deref(), Some(v.as_slice()));
    }
    assert!(!paths[1].exists(), "a reader created the removed replica's directory");

    let (code, out) = run("repair", &store_arg);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(run("health", &store_arg).0, Some(0));
}

/// A replica root whose path can no longer be examined (here a link to a disk that is gone): readers open
/// the version all the same and fail over to the primary; health reports the replica's copies. Refusing to
/// open such a root failed the whole version, on every lookup, though the primary held it intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_a_broken_link_is_failed_over_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let link = dir.path().join("replica");
    std::os::unix::fs::symlink(&disk, &link).unwrap();
    let roots = vec![
        Store::open(dir.path().join("primary").to_str().unwrap()).unwrap(),
        Store::open(link.to_str().unwrap()).unwrap(),
    ];
    ingest_into(&roots, example_data(), Some(4)).await;
    // The manifest names where the link led; now that place is behind a link to nothing.
    std::fs::remove_dir_all(&disk).unwrap();
    std::os::unix::fs::symlink(dir.path().join("unmounted"), &disk).unwrap();

    let engine = Engine::new(Store::open(roots[0].url.as_str()).unwrap(), EngineConfig::default());
    for (k, v) in read_dataset(&example_data()).iter().step_by(7) {
        assert_eq!(engine.get("default", k).await.unwrap().as_deref(), Some(v.as_slice()));
    }
    let out = cairn(&["health", "-k", "default", "--store", roots[0].url.as_str()], None, &[]);
    assert_eq!(out.status.code(), Some(3), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!dir.path().join("unmounted").exists());
}
