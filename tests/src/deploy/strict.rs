//! Strict parsing: a manifest must deserialize into its typed object (k8s-openapi for
//! Kubernetes kinds, the small typed models below for cert-manager, the Prometheus
//! Operator and kustomize files) and serialize back to the same JSON. A field the type
//! does not know is dropped on the way, so it shows up as a difference, reported with
//! its path (`spec.template.spec.containers[0].securityContxt`).

use k8s_openapi::{
    Resource,
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        apps::v1::{DaemonSet, Deployment},
        core::v1::{Namespace, Secret, Service, ServiceAccount},
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Parses `value` as `T` and back; `Err` names the path of the first field lost or
/// changed on the way, or the deserialization error with its path.
pub fn roundtrip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, String> {
    let typed: T = serde_path_to_error::deserialize(value.clone())
        .map_err(|e| format!("at {}: {}", e.path(), e.inner()))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("serializing back: {e}"))?;
    match lost(value, &back, "") {
        Some(path) => Err(format!("unknown or misspelt field at {path}")),
        None => Ok(typed),
    }
}

/// The first path present in `input` that `output` does not carry with the same value.
fn lost(input: &Value, output: &Value, at: &str) -> Option<String> {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => i.iter().find_map(|(k, v)| {
            let here = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match o.get(k) {
                Some(w) => lost(v, w, &here),
                // An explicit null or empty map/list means "not set": nothing is lost.
                None if is_empty(v) => None,
                None => Some(here),
            }
        }),
        (Value::Array(i), Value::Array(o)) if i.len() == o.len() => i
            .iter()
            .zip(o)
            .enumerate()
            .find_map(|(n, (v, w))| lost(v, w, &format!("{at}[{n}]"))),
        _ if super::manifest::same_scalar(input, output) => None,
        _ => Some(format!("{at} (was {input}, typed {output})")),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

macro_rules! k8s_kinds {
    ($value:expr, $($ty:ty),* $(,)?) => {{
        let api_version = $value["apiVersion"].as_str().unwrap_or_default();
        let kind = $value["kind"].as_str().unwrap_or_default();
        $(
            if api_version == <$ty as Resource>::API_VERSION && kind == <$ty as Resource>::KIND {
                return roundtrip::<$ty>($value).map(|_| ());
            }
        )*
    }};
}

/// Checks one object of any kind this bundle ships. Unknown kinds are an error: a new
/// kind needs a type here before it can be shipped.
pub fn check(value: &Value) -> Result<(), String> {
    k8s_kinds!(
        value,
        Namespace,
        ServiceAccount,
        Service,
        Secret,
        ClusterRole,
        ClusterRoleBinding,
        Role,
        RoleBinding,
        Deployment,
        DaemonSet,
        PodDisruptionBudget,
        ValidatingWebhookConfiguration,
        MutatingWebhookConfiguration,
        CustomResourceDefinition,
    );
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let kind = value["kind"].as_str().unwrap_or_default();
    match (api_version, kind) {
        ("cert-manager.io/v1", "Issuer") => roundtrip::<Issuer>(value).map(|_| ()),
        ("cert-manager.io/v1", "Certificate") => roundtrip::<Certificate>(value).map(|_| ()),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            roundtrip::<ServiceMonitor>(value).map(|_| ())
        }
        ("kustomize.config.k8s.io/v1beta1", "Kustomization")
        | ("kustomize.config.k8s.io/v1alpha1", "Component") => {
            roundtrip::<Kustomization>(value).map(|_| ())
        }
        _ => Err(format!(
            "{api_version} {kind}: no typed model for this kind (add one to tests/src/deploy/strict.rs)"
        )),
    }
}

// Typed models of the third-party kinds, limited to the fields their API defines that
// this bundle may use (cert-manager.io/v1, monitoring.coreos.com/v1, kustomize). Unknown
// fields are refused outright.

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Issuer {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: IssuerSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<SelfSigned>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaIssuer>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelfSigned {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_distribution_points: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaIssuer {
    pub secret_name: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Certificate {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: CertificateSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    pub issuer_ref: IssuerRef,
    #[serde(default, rename = "isCA", skip_serializing_if = "Option::is_none")]
    pub is_ca: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKey>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrivateKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMonitor {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceMonitorSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    pub selector: LabelSelector,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    pub port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// `kustomization.yaml` (Kustomization or Component), the fields this bundle uses.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<KustomizePatch>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KustomizePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                    {"name": "c", "image": "i", "securityContext": {"readOnlyRootFilesystem": true}}
                ]}}
            }
        })
    }

    #[test]
    fn a_valid_object_passes() {
        check(&deployment()).expect("valid");
    }

    #[test]
    fn a_misspelt_field_is_reported_with_its_path() {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = json!({});
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicee"] = json!("Always");
        let err = check(&d).expect_err("unknown field");
        assert!(
            err.contains("spec.template.spec.containers[0].imagePullPolicee"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_is_reported_with_its_path() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!("two");
        let err = check(&d).expect_err("wrong type");
        assert!(err.contains("spec.replicas"), "{err}");
    }

    #[test]
    fn third_party_kinds_refuse_unknown_fields_and_unknown_kinds_are_refused() {
        let cert = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "c"},
            "spec": {"secretName": "s", "issuerRef": {"name": "i"}, "dnsName": ["x"]}});
        let err = check(&cert).expect_err("dnsName is not a field");
        assert!(err.contains("dnsName"), "{err}");
        let odd =
            json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}});
        assert!(
            check(&odd)
                .expect_err("unknown kind")
                .contains("no typed model")
        );
    }
}
