//! `crds/` must be exactly what `mlflow-secrets crdgen` generates from the
//! Rust types (docs/design.md §8: CI fails when they differ).

use std::collections::BTreeSet;
use std::path::PathBuf;

const HOW_TO_FIX: &str = "run `cargo run -- crdgen --output-dir crds/` and commit the result";

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
    let generated = mlflow_secrets::k8s::crdgen::rendered().expect("CRDs render");
    let mut expected = BTreeSet::new();
    for (name, yaml) in &generated {
        expected.insert(name.clone());
        let path = dir.join(name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}): {HOW_TO_FIX}", path.display()));
        assert!(
            committed == *yaml,
            "{} differs from the CRD generated from src/k8s/crd.rs: {HOW_TO_FIX}",
            path.display()
        );
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: {HOW_TO_FIX}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    let stale: Vec<_> = present.difference(&expected).collect();
    assert!(
        stale.is_empty(),
        "crds/ holds files crdgen does not generate: {stale:?}; remove them, then {HOW_TO_FIX}"
    );
}
