//! The committed CRDs are exactly what the Rust types generate.

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = xtask::repo_root().join("deploy/crds");
    let drift = xtask::check_crds(&dir).expect("CRDs can be rendered and read");
    assert!(
        drift.is_empty(),
        "run `cargo xtask crds` and commit:\n{}",
        drift.join("\n")
    );
}

#[test]
fn the_helm_chart_carries_the_same_crds() {
    let dir = xtask::repo_root().join("deploy/helm/couchestor/crds");
    let drift = xtask::check_crds(&dir).expect("CRDs can be rendered and read");
    assert!(
        drift.is_empty(),
        "run `cargo xtask crds` and commit:\n{}",
        drift.join("\n")
    );
}

#[test]
fn the_crd_kustomization_lists_exactly_the_generated_crds() {
    let dir = xtask::repo_root().join(xtask::KUSTOMIZE_CRD_DIR);
    let drift = xtask::check_crd_kustomization(&dir).expect("renders");
    assert!(drift.is_empty(), "run `cargo xtask crds`: {drift:?}");
    let text = xtask::render_crd_kustomization().expect("renders");
    assert_eq!(text.matches("\n  - ").count(), 5, "{text}");
}

#[test]
fn a_changed_crd_file_is_reported_as_drift() {
    let tmp = std::env::temp_dir().join(format!("couchestor-crd-drift-{}", std::process::id()));
    let written = xtask::write_crds(&tmp).expect("write to a temp dir");
    assert_eq!(written.len(), 5, "one file per kind");
    assert!(xtask::check_crds(&tmp).expect("check").is_empty());
    let victim = &written[0];
    let text = std::fs::read_to_string(victim).expect("read back");
    std::fs::write(victim, text.replace("shortNames", "shortNamez")).expect("tamper");
    let drift = xtask::check_crds(&tmp).expect("check");
    std::fs::remove_dir_all(&tmp).ok();
    assert_eq!(drift.len(), 1, "{drift:?}");
}
