//! `cairn serve FILE` restarted over the store it published to: FILE is published again only when it
//! changed. Found by review: a restart compared FILE with the current version alone, so a delete, a delta,
//! a compaction or a rollback made since (none of which FILE's content fingerprints) was silently undone by
//! a new full version of FILE.

use cairn_tests::process::{Served, cairn, serve};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn get(s: &Served, key: &str) -> Option<String> {
    let out = cairn(&["--url", &s.url, "get", key], None, &[]);
    let v = text(&out.stdout).trim_end().to_string();
    // Exit 1 and `(nil)` for a key not found, as redis-cli prints it.
    assert_eq!(out.status.success(), v != "(nil)", "{v} {}", text(&out.stderr));
    (v != "(nil)").then_some(v)
}

fn admin(dir: &std::path::Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    let store = dir.join(".cairn");
    all.extend(["--store", store.to_str().unwrap()]);
    let out = cairn(&all, None, &[]);
    assert!(out.status.success(), "cairn {args:?}: {}", text(&out.stderr));
    text(&out.stdout) + &text(&out.stderr)
}

/// A directory holding FILE (`d.txt`) with `body`, served once (so published into `.cairn`).
fn served_once(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.txt"), body).unwrap();
    drop(serve(dir.path(), &["d.txt"], &[]));
    dir
}

fn current(dir: &std::path::Path) -> String {
    let shown = admin(dir, &["versions", "-k", "default"]);
    let line = shown.lines().find(|l| l.starts_with("* ")).unwrap_or_else(|| panic!("{shown}"));
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn a_restart_keeps_what_was_done_since_file_was_published_and_publishes_file_when_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("d.txt"), "a 1\nb 2\nc 3\n").unwrap();
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(get(&s, "b").as_deref(), Some("2"));
    drop(s);

    // A delete (a delta layer) survives a restart over the same FILE.
    admin(d, &["delete", "-k", "default", "b"]);
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(get(&s, "b"), None, "a restart undid the delete:\n{}", s.log);
    drop(s);

    // So does a compaction of it.
    admin(d, &["compact", "-k", "default"]);
    let compacted = current(d);
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(get(&s, "b"), None, "a restart undid the compaction:\n{}", s.log);
    assert_eq!(current(d), compacted);
    drop(s);

    // And a rollback (to the version before the delete).
    admin(d, &["rollback", "-k", "default", "--to", &first_version(d)]);
    let rolled_back = current(d);
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(get(&s, "b").as_deref(), Some("2"));
    assert_eq!(current(d), rolled_back, "a restart published over a rollback:\n{}", s.log);
    drop(s);

    // FILE changed: it is published.
    std::fs::write(d.join("d.txt"), "a 1\nb 20\nc 3\n").unwrap();
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(get(&s, "b").as_deref(), Some("20"), "a changed FILE was not published:\n{}", s.log);
    drop(s);
    // Rolled back to the build before it, FILE unchanged: the rollback stands.
    admin(d, &["rollback", "-k", "default"]);
    let rolled_back = current(d);
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(get(&s, "b").as_deref(), Some("2"), "a restart published over a rollback:\n{}", s.log);
    assert_eq!(current(d), rolled_back);
    drop(s);
    // Back to the newest build: reused.
    admin(d, &["rollback", "-k", "default"]);
    let s = serve(d, &["d.txt"], &[]);
    assert!(s.log.contains("already ingested"), "{}", s.log);
    assert_eq!(get(&s, "b").as_deref(), Some("20"));
    drop(s);

    // FILE changed and published by hand (`cairn ingest`), then a delete: serve's record is older than
    // FILE, but the current version is made of it, so the delete stands (fifth review).
    std::fs::write(d.join("d.txt"), "a 100\nb 200\nc 300\n").unwrap();
    let file = d.join("d.txt");
    admin(d, &["ingest", file.to_str().unwrap(), "-k", "default"]);
    admin(d, &["delete", "-k", "default", "c"]);
    let deleted = current(d);
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(current(d), deleted, "published over a delete:\n{}", s.log);
    assert_eq!((get(&s, "a").as_deref(), get(&s, "c")), (Some("100"), None));
    drop(s);

    // A serve stopped after its publish and before its record: the record says the publish was not seen to
    // end, and a FILE changed back since is published, not taken for the one recorded before.
    let pending = serde_json::json!({ "fingerprint": "xxh3-64:0", "version": null, "lineage": null });
    std::fs::write(d.join(".cairn/keyspace=default/_serve.json"), pending.to_string()).unwrap();
    std::fs::write(d.join("d.txt"), "a 1\nb 2\nc 3\n").unwrap();
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(get(&s, "a").as_deref(), Some("1"), "a changed FILE was not published:\n{}", s.log);
}

/// Found by a second review: the build was looked for only among the versions the pointer lists, which
/// hold 64 switches: past them, a keyspace changed only by deltas made serve refuse to start. The build is
/// now found by following the current version back (its oldest layer, a compaction's source).
#[test]
fn a_restart_finds_the_build_after_more_switches_than_the_pointer_lists() {
    let dir = served_once("a 1\nb 2\nc 3\n");
    let d = dir.path();
    admin(d, &["delete", "-k", "default", "b"]);
    admin(d, &["delete", "-k", "default", "c"]);
    // 65 rollbacks between the two deltas: the build drops out of the pointer's history.
    for _ in 0..65 {
        admin(d, &["rollback", "-k", "default"]);
    }
    let before = current(d);
    let s = serve(d, &["d.txt"], &[]);
    assert!(s.log.contains("unchanged since"), "{}", s.log);
    assert_eq!(current(d), before, "published over the deltas:\n{}", s.log);
    assert_eq!(get(&s, "b"), None);
}

/// With serve's record a restart tells whether FILE changed whatever gc collected; without it (a store
/// written before the record existed), when the build the current version comes from has been collected,
/// it cannot: serve says so and how to publish FILE, serves what is published, and publishes nothing.
#[test]
fn a_restart_that_cannot_tell_whether_file_changed_serves_what_is_published() {
    let dir = served_once("a 1\nb 2\nc 3\n");
    let d = dir.path();
    admin(d, &["delete", "-k", "default", "b"]);
    admin(d, &["compact", "-k", "default"]);
    admin(d, &["delete", "-k", "default", "c"]);
    admin(d, &["compact", "-k", "default"]);
    let before = current(d);
    admin(d, &["gc", "-k", "default", "--keep", "0", "--min-age", "0s"]);
    // With serve's record, it can tell: unchanged.
    let s = serve(d, &["d.txt"], &[]);
    assert!(s.log.contains("unchanged since"), "{}", s.log);
    assert_eq!(current(d), before);
    drop(s);
    // Without it (a store written before the record existed), it cannot.
    std::fs::remove_file(d.join(".cairn/keyspace=default/_serve.json")).unwrap();
    let s = serve(d, &["d.txt"], &[]);
    assert!(
        s.log.contains("cannot tell whether d.txt changed") && s.log.contains("d.txt -k default --store"),
        "{}",
        s.log
    );
    assert_eq!(current(d), before, "published anyway:\n{}", s.log);
    assert_eq!((get(&s, "a").as_deref(), get(&s, "b"), get(&s, "c")), (Some("1"), None, None));
}

/// Found by a third review, when FILE's last publish was looked for among the versions the pointer names: a
/// rollback to an older build, or to a compaction whose source was collected, was published over when FILE
/// was unchanged since a newer build. serve's record of what it published decides now.
#[test]
fn a_restart_keeps_a_rollback_away_from_the_build_file_was_last_published_as() {
    // Deltas over the newer build push it out of the pointer's history; then a rollback to the older one.
    let dir = served_once("a 1\nb 2\nc 3\n");
    let d = dir.path();
    let older = current(d);
    std::fs::write(d.join("d.txt"), "a 10\nb 20\nc 30\n").unwrap();
    drop(serve(d, &["d.txt"], &[]));
    admin(d, &["delete", "-k", "default", "b"]);
    admin(d, &["delete", "-k", "default", "c"]);
    for _ in 0..65 {
        admin(d, &["rollback", "-k", "default"]);
    }
    admin(d, &["rollback", "-k", "default", "--to", &older]);
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(current(d), older, "published over a rollback:\n{}", s.log);
    assert_eq!(get(&s, "a").as_deref(), Some("1"));
    drop(s);

    // A rollback to a compaction whose source gc collected; the newer build is still named.
    let dir = served_once("a 1\nb 2\nc 3\n");
    let d = dir.path();
    admin(d, &["delete", "-k", "default", "b"]);
    admin(d, &["compact", "-k", "default"]);
    let compacted = current(d);
    std::fs::write(d.join("d.txt"), "a 10\nb 20\nc 30\n").unwrap();
    drop(serve(d, &["d.txt"], &[]));
    admin(d, &["rollback", "-k", "default", "--to", &compacted]);
    admin(d, &["gc", "-k", "default", "--keep", "0", "--min-age", "0s"]);
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(current(d), compacted, "published over a rollback:\n{}", s.log);
    assert_eq!((get(&s, "a").as_deref(), get(&s, "b")), (Some("1"), None));
    drop(s);

    // A rollback to the older build, a delete over it, and gc collecting the newer build (fourth review).
    let dir = served_once("a 1\nb 2\nc 3\n");
    let d = dir.path();
    let older = current(d);
    std::fs::write(d.join("d.txt"), "a 10\nb 20\nc 30\n").unwrap();
    drop(serve(d, &["d.txt"], &[]));
    admin(d, &["rollback", "-k", "default", "--to", &older]);
    admin(d, &["delete", "-k", "default", "c"]);
    let deleted = current(d);
    admin(d, &["gc", "-k", "default", "--keep", "0", "--min-age", "0s"]);
    let s = serve(d, &["d.txt"], &[]);
    assert_eq!(current(d), deleted, "published over a rollback and a delete:\n{}", s.log);
    assert_eq!((get(&s, "a").as_deref(), get(&s, "c")), (Some("1"), None));
}

/// The oldest version `cairn versions` lists.
fn first_version(dir: &std::path::Path) -> String {
    let shown = admin(dir, &["versions", "-k", "default"]);
    let ids: Vec<String> =
        shown.split_whitespace().map(|w| w.trim_start_matches('*').to_string()).filter(|w| w.contains("Z-")).collect();
    ids.iter().min().cloned().unwrap_or_else(|| panic!("{shown}"))
}
