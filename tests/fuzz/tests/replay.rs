//! Runs every file under `corpus/<target>/` through its fuzz target (the test command does this on stable):
//! inputs a fuzzing run found interesting, crashes it found included, stay regression tests.

#[test]
fn every_corpus_input_passes_its_target() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for (name, target) in cairn_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name}");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panicked", f.display());
        }
        println!("{name}: {} inputs", files.len());
        total += files.len();
    }
    assert!(total > 0);
}
