//! The grants in `deploy/RBAC.md` against the Roles and ClusterRoles the manifests
//! create: every verb shipped must be listed there with the code that uses it, and
//! nothing listed may be missing from the manifests.

use std::collections::BTreeSet;

use serde_json::Value;

/// One permission: a component may `verb` on `resource` in API `group` ("" = core).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub component: String,
    pub group: String,
    pub resource: String,
    pub verb: String,
}

/// Rows of the table whose header starts `| Component | API group | Resource | Verbs |`;
/// `core` stands for the core group. A row without a justification (last column) is an
/// error.
pub fn from_markdown(text: &str) -> Result<BTreeSet<Grant>, String> {
    let mut grants = BTreeSet::new();
    let mut in_table = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.first() == Some(&"Component") && cells.get(1) == Some(&"API group") {
            in_table = true;
            continue;
        }
        if !in_table
            || cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        let [component, group, resource, verbs, why] = cells.as_slice() else {
            return Err(format!("RBAC.md line {}: expected 5 cells", n + 1));
        };
        if why.len() < 10 {
            return Err(format!(
                "RBAC.md line {}: {component} {resource} has no justification",
                n + 1
            ));
        }
        let group = match group.trim_matches('`') {
            "core" => String::new(),
            g => g.to_owned(),
        };
        for verb in verbs.split(',') {
            grants.insert(Grant {
                component: component.trim_matches('`').to_owned(),
                group: group.clone(),
                resource: resource.trim_matches('`').to_owned(),
                verb: verb.trim().trim_matches('`').to_owned(),
            });
        }
    }
    Ok(grants)
}

/// The grants of every Role and ClusterRole in `objects`; the component is the
/// `app.kubernetes.io/name` label without its `couchestor-` prefix.
pub fn from_objects(objects: &[Value]) -> Result<BTreeSet<Grant>, String> {
    let mut grants = BTreeSet::new();
    for obj in objects {
        if !matches!(obj["kind"].as_str(), Some("Role" | "ClusterRole")) {
            continue;
        }
        let label = obj["metadata"]["labels"]["app.kubernetes.io/name"]
            .as_str()
            .ok_or_else(|| {
                format!(
                    "{} has no app.kubernetes.io/name label",
                    obj["metadata"]["name"]
                )
            })?;
        let component = label.strip_prefix("couchestor-").unwrap_or(label);
        for rule in obj["rules"].as_array().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        grants.insert(Grant {
                            component: component.to_owned(),
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                        });
                    }
                }
            }
        }
    }
    Ok(grants)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_rows_expand_to_one_grant_per_verb() {
        let md = "text\n\n| Component | API group | Resource | Verbs | Used by |\n|---|---|---|---|---|\n\
                  | webhook | `storage.k8s.io` | `storageclasses` | list, watch | webhook/src/index.rs: `watch` |\n\
                  | csi-sidecar | core | `persistentvolumes` | get | csi-sidecar/src/cluster.rs: `archive_of` |\n";
        let grants = from_markdown(md).expect("parses");
        assert_eq!(grants.len(), 3);
        assert!(grants.contains(&Grant {
            component: "csi-sidecar".into(),
            group: String::new(),
            resource: "persistentvolumes".into(),
            verb: "get".into()
        }));
        let role = json!({"kind": "ClusterRole", "metadata": {"name": "x",
            "labels": {"app.kubernetes.io/name": "couchestor-webhook"}},
            "rules": [{"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["list", "watch"]}]});
        assert_eq!(from_objects(&[role]).expect("grants").len(), 2);
    }

    #[test]
    fn a_row_without_justification_is_refused() {
        let md = "| Component | API group | Resource | Verbs | Used by |\n|---|---|---|---|---|\n\
                  | webhook | core | pods | delete | |\n";
        assert!(from_markdown(md).is_err());
    }
}
