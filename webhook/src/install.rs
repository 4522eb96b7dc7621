//! Installs the self-signed serving certificate into a cluster without cert-manager:
//! the serving Secret (server-side apply under the webhook's field manager) and the
//! CA in every webhook's `clientConfig.caBundle`.
//!
//! `caBundle` is set with one JSON-patch operation per webhook index, because a merge
//! patch would replace the whole `webhooks` list (and with it other managers' fields).

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use couchestor_core::names;
use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::Secret,
    },
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams},
};

use crate::certs::{Authority, Serving};

/// What to install, and where.
#[derive(Debug, Clone)]
pub struct Target {
    pub namespace: String,
    /// Secret mounted by the webhook Deployment (`tls.crt`, `tls.key`, `ca.crt`).
    pub secret: String,
    pub validating: String,
    pub mutating: String,
}

/// Applies the Secret and patches both webhook configurations' `caBundle`.
pub async fn install(
    client: Client,
    target: &Target,
    ca: &Authority,
    serving: &Serving,
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let data = BTreeMap::from([
        (
            "tls.crt".to_owned(),
            ByteString(serving.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(serving.key_pem.clone().into_bytes()),
        ),
        (
            "ca.crt".to_owned(),
            ByteString(ca.cert_pem.clone().into_bytes()),
        ),
    ]);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(target.secret.clone()),
            namespace: Some(target.namespace.clone()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    let params = PatchParams::apply(names::MANAGER_WEBHOOK).force();
    secrets
        .patch(&target.secret, &params, &Patch::Apply(&secret))
        .await
        .with_context(|| format!("applying Secret {}/{}", target.namespace, target.secret))?;

    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca.cert_pem);
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let count = validating
        .get(&target.validating)
        .await
        .with_context(|| {
            format!(
                "reading ValidatingWebhookConfiguration {}",
                target.validating
            )
        })?
        .webhooks
        .map_or(0, |w| w.len());
    validating
        .patch(
            &target.validating,
            &PatchParams::default(),
            &Patch::Json::<()>(ca_bundle_patch(count, &bundle)?),
        )
        .await
        .with_context(|| format!("patching caBundle of {}", target.validating))?;

    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client);
    let count = mutating
        .get(&target.mutating)
        .await
        .with_context(|| format!("reading MutatingWebhookConfiguration {}", target.mutating))?
        .webhooks
        .map_or(0, |w| w.len());
    mutating
        .patch(
            &target.mutating,
            &PatchParams::default(),
            &Patch::Json::<()>(ca_bundle_patch(count, &bundle)?),
        )
        .await
        .with_context(|| format!("patching caBundle of {}", target.mutating))?;
    Ok(())
}

/// One `add` per webhook (`add` replaces an existing member, so it also rotates).
pub fn ca_bundle_patch(webhooks: usize, bundle_b64: &str) -> anyhow::Result<json_patch::Patch> {
    let ops: Vec<serde_json::Value> = (0..webhooks)
        .map(|i| serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle_b64}))
        .collect();
    Ok(serde_json::from_value(serde_json::Value::Array(ops))?)
}
