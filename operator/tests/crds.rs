//! `crds/` is generated from the Rust types: it must equal what `shellcar crd` writes.

#[test]
fn committed_crds_match_the_rust_types() {
    for (file, generated) in shellcar::crds().unwrap() {
        let path = format!("{}/../crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        assert!(
            committed == generated,
            "crds/{file} is out of date: run `make crds` (shellcar crd --out-dir crds)"
        );
    }
}
