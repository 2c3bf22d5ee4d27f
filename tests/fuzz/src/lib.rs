//! Fuzz targets: each takes arbitrary bytes and must neither panic nor hang, whatever they are. cargo-fuzz
//! drives them (`fuzz_targets/`, nightly), and `tests/replay.rs` runs every file of `corpus/<target>/`
//! through them in the ordinary test command, so whatever a fuzzing run found stays a regression test.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use cairn_shared::format::block::{ChunkRanges, Rows, Search};
use cairn_shared::format::manifest::{FORMAT_VERSION, Manifest, Source, checksum_of};
use cairn_shared::format::ring::{Placement, PlacementSpec};
use cairn_shared::format::shard_reader::ShardMeta;
use cairn_shared::format::shard_writer::{ShardFormat, ShardWriter};
use cairn_shared::stores::Store;
use cairn_shared::{Engine, versions::pointer};
use object_store::ObjectStoreExt;

/// A fuzz target: arbitrary bytes in, no panic and no hang.
pub type Target = fn(&[u8]);

/// The targets by name, for the replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("shard_suffix", shard_suffix),
    ("shard_flipped", shard_flipped),
    ("shard_pieces", shard_pieces),
    ("block", block),
    ("manifest_pointer", manifest_pointer),
    ("key", key),
    ("http_routes", http_routes),
    ("plain_get", plain_get),
];

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in data.iter().skip(at).take(8).enumerate() {
        b[i] = *x;
    }
    u64::from_le_bytes(b)
}

/// Looks up every key of `meta`'s blocks that decodes, and a few that are absent.
fn exercise(meta: &ShardMeta, object: &Bytes) {
    for probe in [&b""[..], b"key-0001", b"zzzz", b"\xff\xff"] {
        let _ = meta.probe(probe);
    }
    let _ = meta.data_range();
    for at in &meta.blocks {
        let Some(bytes) = object.get(at.offset as usize..).and_then(|b| b.get(..at.len as usize)) else { continue };
        let bytes = object.slice_ref(bytes);
        for search in [Search::Binary, Search::Hashed(None)] {
            if let Ok(rows) = Rows::decode(bytes.clone(), [(0, at.chunks, at.rows)], search) {
                let _ = rows.get(b"key-0001");
                let _ = rows.get(b"absent");
            }
        }
    }
}

/// A shard's metadata suffix: the first 8 bytes say how long the whole object claims to be.
pub fn shard_suffix(data: &[u8]) {
    let file_len = u64_at(data, 0) % (1 << 40);
    let suffix = Bytes::copy_from_slice(data.get(8..).unwrap_or_default());
    if let Ok(meta) = ShardMeta::from_suffix("fuzz".into(), file_len, suffix.clone()) {
        exercise(&meta, &suffix);
    }
}

/// A real format-2 shard, written by cairn's writer once, with bytes changed as `data` says ((position, xor)
/// pairs).
pub static SHARD: LazyLock<(Bytes, u64)> = LazyLock::new(|| {
    let mut buf = Vec::new();
    let format = ShardFormat { block_rows: 16, partitioned: false, ..ShardFormat::default() };
    let mut w = ShardWriter::new(&mut buf, &format, vec![]).expect("writer");
    for i in 0..40 {
        w.append(&format!("key-{i:04}"), format!("value {i}").as_bytes()).expect("append");
    }
    let sum = w.finish().expect("finish");
    (Bytes::from(buf), sum.meta_bytes)
});

/// `shard` with bytes changed as `data` says: (u16 position, xor) triples.
fn flipped(shard: &Bytes, data: &[u8]) -> Bytes {
    let mut bytes = shard.to_vec();
    for pair in data.chunks(3) {
        let at = u16::from_le_bytes([pair[0], *pair.get(1).unwrap_or(&0)]) as usize % bytes.len();
        bytes[at] ^= *pair.get(2).unwrap_or(&0xff);
    }
    Bytes::from(bytes)
}

pub fn shard_flipped(data: &[u8]) {
    let (shard, meta_bytes) = &*SHARD;
    let object = flipped(shard, data);
    let suffix = object.slice(object.len() - *meta_bytes as usize..);
    if let Ok(meta) = ShardMeta::from_suffix("fuzz".into(), object.len() as u64, suffix) {
        exercise(&meta, &object);
    }
}

/// A real format-3 shard with small pieces (so it has a root), and the root its manifest entry names.
pub static SHARD3: LazyLock<(Bytes, cairn_shared::format::piece::RootRef)> = LazyLock::new(|| {
    let mut buf = Vec::new();
    let format = ShardFormat { block_rows: 16, piece_bytes: 300, ..ShardFormat::default() };
    let mut w = ShardWriter::new(&mut buf, &format, vec![]).expect("writer");
    for i in 0..600 {
        w.append(&format!("key-{i:04}"), format!("value {i}").as_bytes()).expect("append");
    }
    let sum = w.finish().expect("finish");
    (Bytes::from(buf), sum.root.expect("a root"))
});

/// The format-3 shard with bytes changed as `data` says: its root, then every piece it lists, are decoded
/// as a reader decodes them (without the checksums that would catch the change first), then probed.
pub fn shard_pieces(data: &[u8]) {
    let (shard, root) = &*SHARD3;
    let object = flipped(shard, data);
    let len = object.len() as u64;
    let at = |o: u64, l: u32| object.get(o as usize..).and_then(|b| b.get(..l as usize));
    let Some(root_bytes) = at(root.offset, root.len) else { return };
    let Ok(pieces) = cairn_shared::format::piece::decode_root(root_bytes, len, root) else { return };
    for p in &pieces {
        let Some(piece) = at(p.offset, p.len) else { continue };
        if let Ok(meta) = ShardMeta::from_piece("fuzz".into(), len, piece, p.key.as_bytes()) {
            exercise(&meta, &object);
        }
    }
    let _ = cairn_shared::format::piece::locate(&pieces, b"key-0040");
}

/// One block's bytes: the first 20 bytes give its chunk ranges and row count, the rest are the block.
pub fn block(data: &[u8]) {
    if data.len() < 20 {
        return;
    }
    let r = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes")) % 4096;
    let chunks = ChunkRanges { key: (r(0), r(4)), value: (r(8), r(12)) };
    let rows = (r(16) % 300) as u64;
    let bytes = Bytes::copy_from_slice(&data[20..]);
    for search in [Search::Binary, Search::Hashed(None)] {
        if let Ok(rows) = Rows::decode(bytes.clone(), [(0, chunks, rows)], search) {
            let _ = rows.get(b"");
            let _ = rows.get(b"k");
        }
    }
}

/// A manifest (and, past a NUL byte, a pointer), as JSON from the store.
pub fn manifest_pointer(data: &[u8]) {
    let (m, p) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(m) = Manifest::parse(&"fuzz.json".into(), m)
        && let Ok(placement) = Placement::new(&m.placement)
    {
        for k in [&b"a"[..], b"key-0001", b""] {
            let s = placement.shard_of(k);
            let n = m.placement.shards() as usize;
            assert!((s as usize) < n, "placement named shard {s} of {n}");
            // What a reader indexes with it: the entries, or the group holding them.
            let listed = if m.groups.is_empty() { m.shards.len() } else { m.groups.len() * m.group_shards() as usize };
            assert!((s as usize) < listed, "shard {s} is in no entry or group");
        }
    }
    if let Ok(p) = serde_json::from_slice::<pointer::Pointer>(p) {
        let _ = p.was_current("v");
        let _ = p.replaced_at("v");
    }
}

/// Key and keyspace validation.
pub fn key(data: &[u8]) {
    let problem = cairn_shared::key::key_problem(data);
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(cairn_shared::key::validate_key(s).is_ok(), problem.is_none(), "{s:?}");
        let _ = cairn_shared::key::validate_keyspace(s);
    }
}

struct Http {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
}

/// A router over a memory store holding keyspace `ks` (two shards written by cairn's writer).
static HTTP: LazyLock<Http> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let store = Store::open("memory://fuzz-http").expect("store");
    rt.block_on(async {
        let mut shards = Vec::new();
        for shard in 0..2u32 {
            let mut buf = Vec::new();
            let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).expect("writer");
            let placement = Placement::new(&PlacementSpec::jump(2)).expect("placement");
            for i in 0..50 {
                let k = format!("key-{i:04}");
                if placement.shard_of(k.as_bytes()) == shard {
                    w.append(&k, format!("value {i}").as_bytes()).expect("append");
                }
            }
            let sum = w.finish().expect("finish");
            let path = format!("keyspace=ks/shard={shard:05}/v1.parquet");
            let checksum = checksum_of(&buf);
            store.inner.put(&path.as_str().into(), buf.into()).await.expect("put");
            shards.push(sum.entry(shard, path, checksum));
        }
        let m = Manifest {
            format: FORMAT_VERSION,
            keyspace: "ks".into(),
            version: "v1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            placement: PlacementSpec::jump(2),
            replicas: vec![],
            primary: None,
            source: Source::new("fuzz".into(), vec![]),
            rows: shards.iter().map(|s| s.rows).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            shards,
            groups: vec![],
            delta: None,
            layers: vec![],
        };
        m.write(store.inner.as_ref()).await.expect("manifest");
        let _ = pointer::switch(store.inner.as_ref(), "ks", "v1", None, None).await;
    });
    let engine = Arc::new(Engine::new(store, Default::default()));
    Http { rt, router: cairn_functions::router(engine) }
});

/// An HTTP request: a method byte, then the path and query up to a NUL byte, then the body.
pub fn http_routes(data: &[u8]) {
    use tower::ServiceExt;
    let Some((&m, rest)) = data.split_first() else { return };
    let method = [http::Method::GET, http::Method::POST, http::Method::HEAD, http::Method::PUT][m as usize % 4].clone();
    let (target, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(target) = std::str::from_utf8(target) else { return };
    let uri = format!("/{}", target.trim_start_matches('/'));
    let Ok(req) = http::Request::builder().method(method).uri(uri).body(axum::body::Body::from(body.to_vec())) else {
        return;
    };
    let h = &*HTTP;
    let status = h.rt.block_on(async {
        let r = h.router.clone().oneshot(req).await.expect("infallible");
        let status = r.status();
        let _ = axum::body::to_bytes(r.into_body(), 64 << 20).await;
        status
    });
    assert!(!status.is_server_error(), "a request got {status}: {target:?}");
}

/// The plain-GET loop of `cairn serve` answers a request itself only if hyper would have routed it to the
/// same key: its head parses completely, as a GET whose target `http`'s URI parser (hyper's) accepts, with
/// the path `/v1/keyspaces/{ks}/keys/{key}`.
pub fn plain_get(data: &[u8]) {
    let Some((len, ks, key)) = cairn_functions::plain_get_head(data) else { return };
    assert!(len <= data.len(), "a head longer than the input");
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    assert_eq!(
        req.parse(&data[..len]).ok(),
        Some(httparse::Status::Complete(len)),
        "{:?}",
        String::from_utf8_lossy(data)
    );
    assert_eq!(req.method, Some("GET"));
    let target = req.path.expect("a target");
    let uri: http::Uri = target.parse().unwrap_or_else(|e| panic!("served a target hyper refuses ({e}): {target:?}"));
    assert_eq!(uri.path(), format!("/v1/keyspaces/{ks}/keys/{key}"), "{target:?}");
}
