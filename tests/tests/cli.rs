//! The `cairn` binary as users run it: `cairn serve FILE` on the default embedded store, the client
//! commands and the prompt against it, ingest errors, versions and rollback.

use std::path::Path;

use cairn_tests::process::{self, Served, text};
use cairn_tests::{example_data, read_dataset};

fn serve(cwd: &Path, args: &[&str]) -> Served {
    process::serve(cwd, args, &[])
}

fn cairn(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    process::cairn(args, stdin, &[])
}

#[test]
fn serve_file_then_query_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("example.data");
    std::fs::copy(example_data(), &data).unwrap();
    let rows = read_dataset(&data);
    let (k0, v0) = (&rows[0].0, text(&rows[0].1));
    let (k1, v1) = (&rows[1].0, text(&rows[1].1));

    let server = serve(dir.path(), &["example.data"]);
    assert!(dir.path().join(".cairn/keyspace=default/CURRENT").exists(), "default store is ./.cairn:\n{}", server.log);
    assert!(server.log.contains("published default/"), "{}", server.log);
    let url = server.url.as_str();

    let out = cairn(&["--url", url, "get", k0], None);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), format!("{v0}\n")));
    let out = cairn(&["--url", url, "get", "no-such-key"], None);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(1), "(nil)\n".to_string()));
    let out = cairn(&["--url", url, "mget", k0, "no-such-key", k1], None);
    assert_eq!(text(&out.stdout), format!("{v0}\n(nil)\n{v1}\n"));
    let out = cairn(&["--url", url, "exists", k0, "nope", k1], None);
    assert_eq!(text(&out.stdout), "2\n");
    let out = cairn(&["--url", url, "info", "--json"], None);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["keys"], 10_000);
    // Readable by default, in redis-cli's INFO style.
    let out = cairn(&["--url", url, "info"], None);
    let report = text(&out.stdout);
    assert!(report.starts_with("# Keyspace\nkeyspace:default\n"), "{report}");
    for line in ["keys:10000", "placement_algorithm:jump", "replicated:no", "# Cache", "shard_metadata_hits:"] {
        assert!(report.lines().any(|l| l.starts_with(line)), "{line:?} not in:\n{report}");
    }
    let bytes = info["bytes"].as_u64().unwrap();
    assert!(report.contains(&format!("bytes:{bytes}\nbytes_human:")), "{report}");
    let out = cairn(&["--url", url, "-k", "nope", "get", k0], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("keyspace \"nope\" not found"), "{}", text(&out.stderr));

    // The prompt, fed through a pipe.
    let script = format!("get {k0}\nMGET {k0} missing\nEXISTS {k0} {k1}\nKEYSPACE\nFROB\nQUIT\nGET {k1}\n");
    let out = cairn(&["--url", url], Some(&script));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(&lines[..5], &[v0.clone(), v0.clone(), "(nil)".into(), "(integer) 2".into(), "default".into()]);
    assert!(lines[5].starts_with("(error) unknown command"), "{lines:?}");
    assert_eq!(lines.len(), 6, "QUIT stops reading: {lines:?}");
    let out = cairn(&["--url", url], Some("INFO\nINFO json\n"));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("# Keyspace\n") && shown.contains("\n# Cache\n"), "{shown}");
    let raw = &shown[shown.find("\n{").expect("the JSON document follows") + 1..];
    assert_eq!(serde_json::from_str::<serde_json::Value>(raw).unwrap()["keys"], 10_000);
    drop(server);

    // Same file again: the published version is reused, not re-ingested.
    let again = serve(dir.path(), &["example.data"]);
    assert!(again.log.contains("already ingested"), "{}", again.log);
    let out = cairn(&["--url", &again.url, "get", k1], None);
    assert_eq!(text(&out.stdout), format!("{v1}\n"));
    drop(again);

    // Without FILE: every keyspace already in the store.
    let plain = serve(dir.path(), &[]);
    assert!(plain.log.contains("keyspaces in"), "{}", plain.log);
    let out = cairn(&["--url", &plain.url, "get", k0], None);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn ingest_errors_versions_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    std::fs::write(dir.path().join("bad.data"), "k1 v\nnospace\n").unwrap();
    let out = cairn(&["ingest", dir.path().join("bad.data").to_str().unwrap(), "-k", "ks", "--store", store], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.data:2: no space between key and value") && err.contains("nothing was published"),
        "{err}"
    );

    let out = cairn(&["ingest", dir.path().join("nope.data").to_str().unwrap(), "-k", "ks", "--store", store], None);
    assert!(out.status.code() == Some(1) && text(&out.stderr).contains("nope.data"), "{}", text(&out.stderr));

    let mut versions = Vec::new();
    let replica = dir.path().join("replica");
    let replica_pointer = || -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(replica.join("keyspace=ks").join(cairn_shared::format::layout::POINTER)).unwrap(),
        )
        .unwrap()
    };
    for (i, body) in ["a 1\nb 2\n", "a 10\nb 20\n"].iter().enumerate() {
        let f = dir.path().join(format!("v{i}.data"));
        std::fs::write(&f, body).unwrap();
        let args = ["ingest", f.to_str().unwrap(), "--keyspace", "ks", "--store", store, "--shards", "2"];
        let out = cairn(&[&args[..], &["--replicas", replica.to_str().unwrap()]].concat(), None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        versions.push(err.split("published ks/").nth(1).unwrap().split(':').next().unwrap().to_string());
        assert_eq!(replica_pointer()["version"], versions[i].as_str(), "the replica's pointer copy follows");
    }
    // Each line: the current mark, the version, then what it holds (its layers, keys, bytes, age).
    let listed = |out: std::process::Output| -> String {
        text(&out.stdout).lines().map(|l| format!("{}\n", l.split("  base").next().unwrap())).collect()
    };
    let out = cairn(&["versions", "-k", "ks", "--store", store], None);
    assert!(text(&out.stdout).contains("  base 2 keys"), "{}", text(&out.stdout));
    assert_eq!(listed(out), format!("  {}\n* {}\n", versions[0], versions[1]));
    let out = cairn(&["rollback", "-k", "ks", "--store", store], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cairn(&["versions", "-k", "ks", "--store", store], None);
    assert_eq!(listed(out), format!("* {}\n  {}\n", versions[0], versions[1]));
    assert_eq!(replica_pointer()["version"], versions[0].as_str(), "rollback rewrites the replica's copy");
    let out = cairn(&["rollback", "-k", "ks", "--store", store, "--to", "no-such-version"], None);
    assert_eq!(out.status.code(), Some(1));
}

/// The layer commands as users run them: `ingest --delta`, `delete`, `--max-layers` and `--compact`,
/// `versions` listing layers, `compact`, and a running server following each publish.
#[test]
fn delta_delete_compact_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let write = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let key = |i: u32| format!("{i:08x}-1111-4222-8333-444455556666");
    let base = write("base.txt", (0..300).map(|i| format!("{} v{i}\n", key(i))).collect());
    let ok = |args: &[&str]| {
        let out = cairn(args, None);
        assert_eq!(out.status.code(), Some(0), "cairn {args:?}: {}", text(&out.stderr));
        text(&out.stderr)
    };
    ok(&["ingest", &base, "-k", "ks", "--store", store]);
    let d1 = write("d1.txt", format!("{} changed\n{} added\n", key(1), key(1000)));
    let said = ok(&["ingest", &d1, "-k", "ks", "--store", store, "--delta", "--max-layers", "3"]);
    assert!(said.contains("the version has 2 layers"), "{said}");
    let said = ok(&["delete", "-k", "ks", "--store", store, &key(2), &key(2), &key(3)]);
    assert!(said.contains("2 of them deletions"), "{said}");
    let d3 = write("d3.txt", format!("{} third\n", key(4)));
    let out = cairn(&["ingest", &d3, "-k", "ks", "--store", store, "--delta", "--max-layers", "3"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cairn compact"), "{}", text(&out.stderr));
    let versions = text(&cairn(&["versions", "-k", "ks", "--store", store], None).stdout);
    assert!(versions.contains("3 layers: delta 2 keys, 2 deletions"), "{versions}");
    let said = ok(&["ingest", &d3, "-k", "ks", "--store", store, "--delta", "--max-layers", "3", "--compact"]);
    assert!(said.contains("compacting before the delta"), "{said}");

    let server = process::serve(dir.path(), &["--store", store], &[]);
    let get = |k: &str| {
        let out = cairn(&["--url", &server.url, "--keyspace", "ks", "get", k], None);
        text(&out.stdout)
    };
    assert_eq!(get(&key(1)), "changed\n");
    assert_eq!(get(&key(2)), "(nil)\n");
    assert_eq!(get(&key(4)), "third\n");
    assert_eq!(get(&key(1000)), "added\n");
    assert_eq!(get(&key(5)), "v5\n");
    let info = text(&cairn(&["--url", &server.url, "--keyspace", "ks", "info"], None).stdout);
    assert!(info.contains("# Layers") && info.contains("layers:2"), "{info}");
    ok(&["compact", "-k", "ks", "--store", store]);
    let versions = text(&cairn(&["versions", "-k", "ks", "--store", store], None).stdout);
    assert!(versions.lines().last().is_some_and(|l| l.starts_with("* ") && l.contains("base 299 keys")), "{versions}");
    let out = cairn(&["delete", "-k", "nothing-here", "--store", store, &key(1)], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no version"), "{}", text(&out.stderr));
}

/// A store directory that cannot be created (here under /proc, which refuses new entries) or a replica root
/// that cannot be: `cairn ingest` says so, naming the directory, before it reads any input; nothing else
/// is left behind. The directory used to be made only by the first write, the checkpoint's lease, whose
/// failure then read as a lost race eight times: "the ingest's checkpoint keeps changing hands".
#[test]
fn a_store_directory_that_cannot_be_created_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = example_data();
    let store = dir.path().join("store");
    let (input, store_arg) = (data.to_str().unwrap(), store.to_str().unwrap());
    for (primary, replicas) in [("/proc/cairn-cannot-be-here", None), (store_arg, Some("/proc/cairn-nor-here"))] {
        let mut args = vec!["ingest", input, "-k", "default", "--store", primary];
        if let Some(r) = replicas {
            args.extend(["--replicas", r]);
        }
        let out = cairn(&args, None);
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        let named = replicas.unwrap_or(primary);
        assert!(err.contains("cannot create directory") && err.contains(named), "{err}");
        assert!(!err.contains("changing hands"), "{err}");
        assert!(!store.join("keyspace=default").exists(), "the primary holds something of a failed ingest");
    }
}
