//! The same store on S3 (LocalStack): ingest with replica buckets, `cairn serve --store s3://…` and the
//! Lambda handler answer every key, the conditional pointer switch has one winner against real S3
//! preconditions, and the bucket layout is exactly docs/FORMAT.md's.

use std::sync::Arc;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::versions::gc::GcOptions;
use cairn_shared::{Engine, Error, format::manifest, versions::pointer};
use cairn_tests::process::{self, text};
use cairn_tests::{encode, example_data, read_dataset, s3};
use futures::StreamExt;
use object_store::ObjectStoreExt;

async fn ingest_s3(primary: &str, replicas: &[&str], ks: &str, shards: u32) -> cairn_ingest::IngestReport {
    let mut opts = IngestOptions::new(example_data(), ks, s3::store(primary));
    opts.replicas = replicas.iter().map(|u| s3::store(u)).collect();
    opts.shards = Some(shards);
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_with_replica_buckets_then_serve_and_lambda_answer_every_key() {
    let (b0, b1, b2) = (s3::bucket("primary").await, s3::bucket("replica").await, s3::bucket("replica").await);
    let (primary, r1, r2) = (format!("s3://{b0}/data"), format!("s3://{b1}/data"), format!("s3://{b2}/copy"));
    let report = ingest_s3(&primary, &[&r1, &r2], "default", 4).await;
    assert_eq!(report.rows, 10_000);

    // Every replica holds every shard, byte-identical to the primary's copy.
    let m = manifest::Manifest::read(s3::store(&primary).inner.as_ref(), "default", &report.version).await.unwrap();
    assert_eq!(m.replicas, vec![r1.clone(), r2.clone()]);
    for url in [&primary, &r1, &r2] {
        let store = s3::store(url);
        for shard in &m.shards {
            let bytes = store.inner.get(&shard.path.as_str().into()).await.unwrap().bytes().await.unwrap();
            assert_eq!(
                format!("xxh3-64:{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)),
                shard.checksum,
                "{url} {}",
                shard.path
            );
        }
    }

    // `cairn serve --store s3://…` (the real binary, configured through the standard AWS environment).
    let dir = tempfile::tempdir().unwrap();
    let server = process::serve(dir.path(), &["--store", &primary], &s3::aws_settings());
    let http = reqwest::Client::new();
    let rows = read_dataset(&example_data());
    let wrong = futures::stream::iter(rows.iter())
        .map(|(k, v)| {
            let (http, url) = (http.clone(), format!("{}/v1/keyspaces/default/keys/{}", server.url, encode(k)));
            async move {
                let r = http.get(url).send().await.unwrap();
                !(r.status() == 200 && r.bytes().await.unwrap().as_ref() == v.as_slice())
            }
        })
        .buffer_unordered(16)
        .filter(|bad| std::future::ready(*bad))
        .count()
        .await;
    assert_eq!(wrong, 0, "{}", server.log);
    for _ in 0..200 {
        let url = format!("{}/v1/keyspaces/default/keys/{}", server.url, uuid::Uuid::new_v4());
        assert_eq!(http.get(url).send().await.unwrap().status(), 404);
    }
    let out = process::cairn(&["--url", &server.url, "get", &rows[5].0], None, &[]);
    assert_eq!(text(&out.stdout), format!("{}\n", text(&rows[5].1)));
    drop(server);

    // The Lambda handler in-process over the same bucket.
    let engine = Arc::new(Engine::new(s3::store(&primary), EngineConfig::default()));
    for (k, v) in rows.iter().step_by(101) {
        let event = serde_json::json!({
            "version": "2.0", "rawPath": format!("/v1/keyspaces/default/keys/{k}"), "rawQueryString": "",
            "headers": {"host": "x.lambda-url.us-east-1.on.aws"},
            "requestContext": {"http": {"method": "GET", "path": format!("/v1/keyspaces/default/keys/{k}"),
                "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"}, "domainName": "x.lambda-url.us-east-1.on.aws",
                "requestId": "r", "routeKey": "$default", "stage": "$default", "timeEpoch": 0, "accountId": "1", "apiId": "x"},
            "isBase64Encoded": false
        });
        let resp = cairn_functions::lambda::handle_event(cairn_functions::router(engine.clone()), event).await.unwrap();
        assert_eq!(resp["statusCode"], 200, "{resp}");
        let body = resp["body"].as_str().unwrap();
        let got = if resp["isBase64Encoded"].as_bool().unwrap() {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(body).unwrap()
        } else {
            body.as_bytes().to_vec()
        };
        assert_eq!(got, *v);
    }
    assert_eq!(engine.get("default", "absent-key").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_pointer_switch_has_exactly_one_winner_on_s3() {
    let bucket = s3::bucket("cas").await;
    let store = s3::store(&format!("s3://{bucket}/p"));
    for round in 0..3 {
        let ks = format!("ks{round}");
        // PutMode::Create → If-None-Match: *
        let creates = futures::future::join_all((0..6).map(|i| {
            let (s, ks) = (store.inner.clone(), ks.clone());
            async move { pointer::switch(s.as_ref(), &ks, &format!("v{i}"), None, None).await }
        }))
        .await;
        assert_eq!(creates.iter().filter(|r| r.is_ok()).count(), 1, "create race {round}: {creates:?}");
        // PutMode::Update → If-Match: <etag>
        let cur = pointer::read(store.inner.as_ref(), &ks).await.unwrap().unwrap();
        let updates = futures::future::join_all((0..6).map(|i| {
            let (s, ks, cur) = (store.inner.clone(), ks.clone(), cur.clone());
            async move { pointer::switch(s.as_ref(), &ks, &format!("u{i}"), None, Some(&cur)).await }
        }))
        .await;
        assert_eq!(updates.iter().filter(|r| r.is_ok()).count(), 1, "update race {round}: {updates:?}");
        assert!(updates.iter().all(|r| r.is_ok() || matches!(r, Err(Error::Conflict { .. }))), "{updates:?}");
    }

    // Two whole ingests racing into one keyspace: one publishes, the other gets a conflict.
    let url = format!("s3://{bucket}/race");
    let ingest = |shards| {
        let mut opts = IngestOptions::new(example_data(), "race", s3::store(&url));
        opts.shards = Some(shards);
        cairn_ingest::ingest(opts, Arc::new(NoProgress))
    };
    let (a, b) = tokio::join!(ingest(2), ingest(3));
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|w| **w).count(), 1, "{a:?} {b:?}");
    let loser = a.err().or(b.err()).unwrap();
    assert!(matches!(loser, cairn_ingest::IngestError::Shared(Error::Conflict { .. })), "{loser}");
}

/// `cairn gc` on S3: after three publishes with a replica bucket, the oldest version leaves both buckets,
/// the current version and its predecessor stay, and lookups still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_s3_deletes_the_oldest_version_from_both_buckets() {
    let (b0, b1) = (s3::bucket("gc").await, s3::bucket("gc").await);
    let (primary, replica) = (format!("s3://{b0}/kv"), format!("s3://{b1}/kv"));
    let mut versions = Vec::new();
    for _ in 0..3 {
        versions.push(ingest_s3(&primary, &[&replica], "ks", 2).await.version);
    }
    let roots = [s3::store(&primary), s3::store(&replica)];
    let opts = GcOptions { keep: 0, min_age: std::time::Duration::ZERO, dry_run: false };
    let r = cairn_shared::versions::gc::collect(&roots, "ks", &opts).await.unwrap();
    assert_eq!(r.deleted_versions, vec![versions[0].clone()]);
    assert_eq!(r.objects_deleted, 2 * 3, "manifest and 2 shards, in each bucket: {r:?}");
    for b in [&b0, &b1] {
        let keys = s3::list(b).await;
        assert!(keys.iter().all(|k| !k.contains(versions[0].as_str())), "{keys:?}");
        for kept in &versions[1..] {
            assert_eq!(keys.iter().filter(|k| k.contains(kept.as_str())).count(), 3, "{kept}: {keys:?}");
        }
    }
    let rows = read_dataset(&example_data());
    let engine = Engine::new(s3::store(&primary), EngineConfig::default());
    assert_eq!(engine.get("ks", &rows[0].0).await.unwrap().as_deref(), Some(rows[0].1.as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_layout_is_exactly_what_format_md_says() {
    let (b0, b1) = (s3::bucket("layout").await, s3::bucket("layout").await);
    let report = ingest_s3(&format!("s3://{b0}/root"), &[&format!("s3://{b1}/mirror")], "users", 3).await;
    let v = &report.version;
    let shards: Vec<String> = (0..3).map(|s| format!("keyspace=users/shard={s:05}/{v}.parquet")).collect();
    let mut primary = vec!["keyspace=users/CURRENT".to_string(), format!("keyspace=users/manifests/{v}.json")];
    primary.extend(shards.clone());
    primary.sort();
    let with_prefix = |p: &str, keys: &[String]| keys.iter().map(|k| format!("{p}/{k}")).collect::<Vec<_>>();
    assert_eq!(s3::list(&b0).await, with_prefix("root", &primary));
    // Replicas: shards, manifest and a copy of the pointer; no checkpoint.
    let mut replica = vec!["keyspace=users/CURRENT".to_string(), format!("keyspace=users/manifests/{v}.json")];
    replica.extend(shards);
    replica.sort();
    assert_eq!(s3::list(&b1).await, with_prefix("mirror", &replica));
    // The version id format the document gives: UTC millis, Z, dash, 8 hex digits.
    let (stamp, salt) = v.split_once('-').unwrap();
    assert!(stamp.len() == 19 && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T', "{v}");
    assert!(salt.len() == 8 && salt.bytes().all(|c| c.is_ascii_hexdigit()), "{v}");
}
