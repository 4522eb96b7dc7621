//! Multi-document YAML streams as JSON values, keyed the way Kubernetes identifies them.

use std::{collections::BTreeMap, fmt, path::Path};

use serde::Deserialize;
use serde_json::Value;

/// (kind, namespace, name): what makes an object unique in a cluster (apiVersion aside).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Every non-empty document of a YAML stream (comment-only documents are skipped).
pub fn parse_stream(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// [`parse_stream`] of a file, errors naming the file.
pub fn parse_file(path: &Path) -> Result<Vec<Value>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse_stream(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The key of one object; an error when kind or name is missing.
pub fn key_of(obj: &Value) -> Result<ObjectKey, String> {
    let kind = obj["kind"].as_str().ok_or("object without kind")?;
    let name = obj["metadata"]["name"]
        .as_str()
        .ok_or_else(|| format!("{kind} without metadata.name"))?;
    Ok(ObjectKey {
        kind: kind.to_owned(),
        namespace: obj["metadata"]["namespace"].as_str().map(str::to_owned),
        name: name.to_owned(),
    })
}

/// Objects by key; an error on a duplicate (two documents for one object).
pub fn by_key(objects: &[Value]) -> Result<BTreeMap<ObjectKey, Value>, String> {
    let mut map = BTreeMap::new();
    for obj in objects {
        let key = key_of(obj)?;
        if map.insert(key.clone(), obj.clone()).is_some() {
            return Err(format!("{key} appears twice"));
        }
    }
    Ok(map)
}

/// The differences between two sets of objects, one line each: objects only on one
/// side (unless `allowed_only_left` names them) and, per common object, the first JSON
/// path whose values differ.
pub fn diff(
    left_name: &str,
    left: &[Value],
    right_name: &str,
    right: &[Value],
    allowed_only_left: &[ObjectKey],
) -> Result<Vec<String>, String> {
    let l = by_key(left)?;
    let r = by_key(right)?;
    let mut out = Vec::new();
    for key in l.keys() {
        if !r.contains_key(key) && !allowed_only_left.contains(key) {
            out.push(format!("{key}: only in {left_name}"));
        }
    }
    for key in allowed_only_left {
        if !l.contains_key(key) {
            out.push(format!(
                "{key}: expected in {left_name} (documented difference)"
            ));
        }
    }
    for (key, right_obj) in &r {
        match l.get(key) {
            None => out.push(format!("{key}: only in {right_name}")),
            Some(left_obj) => {
                if let Some(path) = first_difference(left_obj, right_obj, "") {
                    out.push(format!("{key}: differs at {path}"));
                }
            }
        }
    }
    Ok(out)
}

/// The first JSON path (`.a.b[2]`) where two values differ, `None` when equal.
pub fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(v), Some(w)) => first_difference(v, w, &format!("{at}.{k}")),
                _ => Some(format!("{at}.{k} (present on one side only)")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{at}[{i}]"))),
        _ if same_scalar(a, b) => None,
        _ => Some(format!("{at} ({a} vs {b})")),
    }
}

/// Equal values, numbers compared by value: JSON (and so Kubernetes) does not tell `254`
/// from `254.0`, while renderers and typed fields (`f64` schema bounds) switch between them.
pub fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The containers of a workload object (Deployment, DaemonSet, ...), by pod template.
pub fn containers(obj: &Value) -> Vec<&Value> {
    obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_reported_with_their_path() {
        let a = json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}});
        let b = json!({"spec": {"ports": [{"port": 80}, {"port": 8443}]}});
        assert_eq!(
            first_difference(&a, &b, ""),
            Some(".spec.ports[1].port (443 vs 8443)".to_owned())
        );
        assert_eq!(first_difference(&a, &a, ""), None);
        assert_eq!(
            first_difference(&json!({"m": 254}), &json!({"m": 254.0}), ""),
            None
        );
        assert!(first_difference(&json!({"m": 254}), &json!({"m": 255.0}), "").is_some());
        let c = json!({"spec": {}});
        assert!(
            first_difference(&a, &c, "")
                .is_some_and(|p| p.starts_with(".spec.ports (present on one side only)"))
        );
    }

    #[test]
    fn a_stream_skips_empty_documents_and_keys_objects() {
        let docs = parse_stream("---\n# just a comment\n---\nkind: A\nmetadata: {name: x}\n")
            .expect("parses");
        assert_eq!(docs.len(), 1);
        let key = key_of(&docs[0]).expect("key");
        assert_eq!(key.to_string(), "A x");
        assert!(by_key(&[docs[0].clone(), docs[0].clone()]).is_err());
    }
}
