//! AdmissionReview v1 on the wire: what the API server sends and what we answer.
//!
//! Our own small types rather than kube's: the response's `patch` must be a base64
//! string as the API documents (kube-rs serialises it as a byte array), and parsing
//! errors must say exactly what is wrong with the body.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `apiVersion` of the reviews we accept and send.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body is not an AdmissionReview we can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("body is JSON but not an AdmissionReview: {0}")]
    Shape(serde_json::Error),
    #[error(
        "expected apiVersion {API_VERSION:?} and kind \"AdmissionReview\", got {api_version:?} / {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// The parts of `request.kind` we dispatch on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// `AdmissionReview.request`, the fields we use (others are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub operation: Operation,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingReview {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<AdmissionRequest>,
}

/// Parses a request body.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest, ReviewError> {
    let value: Value = serde_json::from_slice(body).map_err(ReviewError::NotJson)?;
    let review: IncomingReview = serde_json::from_value(value).map_err(ReviewError::Shape)?;
    if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
        return Err(ReviewError::WrongType {
            api_version: review.api_version,
            kind: review.kind,
        });
    }
    review.request.ok_or(ReviewError::NoRequest)
}

/// `response.status` when a request is denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `AdmissionReview.response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// Base64 of the JSONPatch document, as the API documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
}

impl AdmissionResponse {
    /// Allow, unchanged.
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            status: None,
            patch_type: None,
            patch: None,
            warnings: vec![],
        }
    }

    /// Deny with an HTTP-style code and a message. The single deny path of the webhook.
    pub fn deny(uid: &str, code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            403 => "Forbidden",
            422 => "Invalid",
            409 => "Conflict",
            _ => "InternalError",
        };
        Self {
            uid: uid.to_owned(),
            allowed: false,
            status: Some(Status {
                code,
                message: message.into(),
                reason: Some(reason.to_owned()),
            }),
            patch_type: None,
            patch: None,
            warnings: vec![],
        }
    }

    /// Allow with a JSONPatch (an array of operations); no patch when it is empty.
    pub fn allow_with_patch(uid: &str, operations: Vec<Value>) -> Self {
        let mut r = Self::allow(uid);
        if !operations.is_empty() {
            let bytes = serde_json::to_vec(&Value::Array(operations)).unwrap_or_default();
            r.patch_type = Some("JSONPatch".to_owned());
            r.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        r
    }

    /// The whole AdmissionReview to send back.
    pub fn into_review(self) -> Value {
        serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "response": self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_is_sent_as_base64_of_a_json_patch_document() {
        let r = AdmissionResponse::allow_with_patch(
            "u1",
            vec![serde_json::json!({"op": "add", "path": "/a", "value": 1})],
        );
        let review = r.into_review();
        let patch = review["response"]["patch"]
            .as_str()
            .expect("patch is a string");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64");
        let doc: Value = serde_json::from_slice(&decoded).expect("JSON");
        assert_eq!(
            doc,
            serde_json::json!([{"op": "add", "path": "/a", "value": 1}])
        );
        assert_eq!(review["response"]["patchType"], "JSONPatch");
        assert_eq!(review["response"]["uid"], "u1");
    }

    #[test]
    fn malformed_bodies_are_told_apart() {
        assert!(matches!(parse(b"{not json"), Err(ReviewError::NotJson(_))));
        assert!(matches!(parse(b"[1,2]"), Err(ReviewError::Shape(_))));
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#),
            Err(ReviewError::WrongType { .. })
        ));
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(ReviewError::NoRequest)
        ));
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}"#),
            Err(ReviewError::Shape(_))
        ));
    }
}
