//! The README's main job, `couchestor-lab`, on a small volume: it must pass every check,
//! print its summary and leave nothing behind.

use std::process::Command;

#[test]
fn the_lab_passes_every_check_on_a_small_volume_and_cleans_up() {
    couchestor_node_agent::lab::require("nbdcopy", "libnbd-bin").unwrap_or_else(|e| panic!("{e}"));
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("lab");
    let out = Command::new(env!("CARGO_BIN_EXE_couchestor-lab"))
        .args(["--size", "12MiB", "-k", "3", "-m", "2", "--agents", "6"])
        .args(["--stripe-size", "192KiB"])
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("run couchestor-lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lab failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checks: 10 of 10 passed"), "{stdout}");
    assert!(stdout.contains("storage overhead"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(!dir.exists(), "the lab removed its work directory");
}

#[test]
fn the_lab_refuses_fewer_agents_than_columns() {
    let out = Command::new(env!("CARGO_BIN_EXE_couchestor-lab"))
        .args(["--agents", "5", "-k", "4", "-m", "2"])
        .output()
        .expect("run couchestor-lab");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fewer than k + m = 6"), "{stderr}");
}
