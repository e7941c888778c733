//! `crds/` is generated from the Rust types: it must equal what `shellcar crd` prints.

#[test]
fn committed_crds_match_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/debugsessions.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/debugsessions.yaml is missing");
    let generated = shellcar::crds_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/ is out of date: run `make crds` (cargo run -- crd > crds/debugsessions.yaml)"
    );
}
