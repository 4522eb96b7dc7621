//! A kube `Client` over `tower_test::mock`: every request the code makes is captured
//! (method, path, query, content type, JSON body) and answered by the test.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
pub type Send = tower_test::mock::SendResponse<Response<Body>>;

/// One request as it went over the wire.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Seen {
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

pub fn client() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// The next request, decoded.
pub async fn next(handle: &mut Handle) -> Option<(Seen, Send)> {
    let (request, send) = handle.next_request().await?;
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        // An apply patch is sent as JSON too (JSON is YAML).
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body,
    };
    Some((seen, send))
}

pub fn respond(send: Send, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response"),
    );
}

/// A Kubernetes `Status` failure body.
pub fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": reason, "code": code, "message": format!("{reason} (test)")})
}

/// Answers every request with `answer(&seen)` and records it, until the client is
/// dropped. A status of 0 leaves the request unanswered for good (a watch that
/// never sends an event).
pub fn serve(
    mut handle: Handle,
    answer: impl Fn(&Seen) -> (u16, Value) + std::marker::Send + 'static,
) -> (Arc<Mutex<Vec<Seen>>>, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let task_log = log.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((seen, send)) = next(&mut handle).await {
            let (code, body) = answer(&seen);
            task_log.lock().expect("log").push(seen);
            if code == 0 {
                held.push(send);
            } else {
                respond(send, code, &body);
            }
        }
    });
    (log, task)
}

/// Drains the log.
pub fn take(log: &Arc<Mutex<Vec<Seen>>>) -> Vec<Seen> {
    std::mem::take(&mut *log.lock().expect("log"))
}
