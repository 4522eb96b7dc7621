//! The webhook configurations in `deploy/webhook/` parse into typed Kubernetes objects
//! with no unknown fields, and say what DESIGN §6 asks: Fail for our CRDs, Ignore for
//! PVC mutation, kube-system excluded, no side effects, paths the server serves.

use std::path::{Path, PathBuf};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/webhook")
}

/// Parses `file` as `T` and fails if any field of the YAML is lost on the way (an
/// unknown or misspelt field).
fn typed<T: DeserializeOwned + Serialize>(file: &str) -> T {
    let text = std::fs::read_to_string(deploy().join(file)).expect("manifest readable");
    let raw: Value = serde_yaml::from_str(&text).expect("YAML");
    let obj: T = serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let back = serde_json::to_value(&obj).expect("serialize");
    assert_eq!(
        strip_empty(back),
        strip_empty(raw),
        "{file} has fields the typed object does not know"
    );
    obj
}

/// `caBundle: ""` serializes away; compare without empty strings.
fn strip_empty(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| v != &Value::String(String::new()))
                .map(|(k, v)| (k, strip_empty(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_empty).collect()),
        other => other,
    }
}

#[test]
fn the_validating_configuration_fails_closed_for_every_couchestor_kind() {
    let cfg: ValidatingWebhookConfiguration = typed("validating.yaml");
    let hooks = cfg.webhooks.expect("webhooks");
    assert_eq!(hooks.len(), 1);
    let hook = &hooks[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.side_effects, "None");
    assert!(hook.timeout_seconds.is_some_and(|t| t <= 10));
    assert_eq!(
        hook.client_config
            .service
            .as_ref()
            .and_then(|s| s.path.as_deref()),
        Some("/validate")
    );
    let resources: Vec<String> = hook
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.resources.clone().unwrap_or_default())
        .collect();
    for plural in [
        "storagepolicies",
        "erasurecodingpolicies",
        "ecvolumes",
        "volumemigrations",
        "storagenodes",
    ] {
        assert!(
            resources.iter().any(|r| r == plural),
            "{plural} not validated"
        );
    }
    let deletes = hook.rules.iter().flatten().any(|r| {
        r.operations.iter().flatten().any(|o| o == "DELETE")
            && r.resources
                .iter()
                .flatten()
                .any(|x| x == "erasurecodingpolicies")
    });
    assert!(deletes, "deleting an EC policy in use must be checked");
}

#[test]
fn the_mutating_configuration_never_blocks_pvcs_and_skips_kube_system() {
    let cfg: MutatingWebhookConfiguration = typed("mutating.yaml");
    let hooks = cfg.webhooks.expect("webhooks");
    for hook in &hooks {
        assert_eq!(
            hook.failure_policy.as_deref(),
            Some("Ignore"),
            "{}",
            hook.name
        );
        assert_eq!(hook.side_effects, "None");
        assert_eq!(
            hook.client_config
                .service
                .as_ref()
                .and_then(|s| s.path.as_deref()),
            Some("/mutate")
        );
    }
    let pvc = hooks
        .iter()
        .find(|h| h.name.starts_with("pvc."))
        .expect("pvc webhook");
    let excluded = pvc
        .namespace_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .is_some_and(|e| {
            e.iter().any(|r| {
                r.operator == "NotIn" && r.values.iter().flatten().any(|v| v == "kube-system")
            })
        });
    assert!(excluded, "kube-system must be excluded");
}

#[test]
fn the_cert_manager_variant_names_the_serving_secret_and_injects_the_ca() {
    let text = std::fs::read_to_string(
        deploy().join("../kustomize/components/cert-manager/certificates.yaml"),
    )
    .expect("readable");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("YAML doc"))
        .collect();
    let serving = docs
        .iter()
        .find(|d| d["kind"] == "Certificate" && d["spec"]["isCA"] != true)
        .expect("serving cert");
    assert_eq!(serving["spec"]["secretName"], "couchestor-webhook-tls");
    assert!(serving["spec"]["dnsNames"].as_array().is_some_and(|n| {
        n.iter()
            .any(|d| d == "couchestor-webhook.couchestor-system.svc")
    }));
    let kustomization = std::fs::read_to_string(
        deploy().join("../kustomize/components/cert-manager/kustomization.yaml"),
    )
    .expect("readable");
    assert!(
        kustomization
            .contains("cert-manager.io/inject-ca-from: couchestor-system/couchestor-webhook")
    );
}

use serde::Deserialize;
