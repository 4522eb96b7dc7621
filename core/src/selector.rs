//! Label selectors: well-formedness checks (reported as field errors) and matching
//! against a label map (pool labels for tier selectors, PVC labels for volume selectors).
//!
//! The rules follow Kubernetes' `metav1.LabelSelector`: keys are qualified names
//! (`[prefix/]name`), values are at most 63 characters of `[A-Za-z0-9._-]` starting and
//! ending alphanumeric; `In`/`NotIn` need at least one value, `Exists`/`DoesNotExist`
//! take none.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::validation::FieldErrors;

/// The operators a `matchExpressions` entry may use.
pub const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Whether `labels` satisfy `selector`. An empty selector matches everything, as in
/// Kubernetes. Unknown operators match nothing (validation rejects them earlier).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_label && by_expression
}

/// Whether the selector has no requirement at all (and so selects everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Whether some label set could satisfy both selectors. Conservative: `true` unless
/// the selectors are provably disjoint (one requires a key value or presence the other
/// rules out). Used to refuse two enabled policies claiming the same volumes.
pub fn may_overlap(a: &LabelSelector, b: &LabelSelector) -> bool {
    let (ra, rb) = (requirements(a), requirements(b));
    !ra.iter().any(|x| rb.iter().any(|y| disjoint(x, y)))
}

/// A selector's requirements as (key, operator, values), `matchLabels` as `In`.
fn requirements(s: &LabelSelector) -> Vec<(&str, &str, Vec<&str>)> {
    let labels = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), "In", vec![v.as_str()]));
    let exprs = s.match_expressions.iter().flatten().map(|e| {
        let values = e.values.iter().flatten().map(String::as_str).collect();
        (e.key.as_str(), e.operator.as_str(), values)
    });
    labels.chain(exprs).collect()
}

/// Whether no label set satisfies both requirements on the same key.
fn disjoint(x: &(&str, &str, Vec<&str>), y: &(&str, &str, Vec<&str>)) -> bool {
    if x.0 != y.0 {
        return false;
    }
    let needs_key = |op: &str| matches!(op, "In" | "Exists");
    match (x.1, y.1) {
        ("In", "In") => !x.2.iter().any(|v| y.2.contains(v)),
        ("In", "NotIn") => x.2.iter().all(|v| y.2.contains(v)),
        ("NotIn", "In") => y.2.iter().all(|v| x.2.contains(v)),
        (a, "DoesNotExist") if needs_key(a) => true,
        ("DoesNotExist", b) if needs_key(b) => true,
        _ => false,
    }
}

/// Checks `selector` and records every problem under `path`.
pub fn check(selector: &LabelSelector, path: &str, errors: &mut FieldErrors) {
    for (key, value) in selector.match_labels.iter().flatten() {
        let at = format!("{path}.matchLabels[{key:?}]");
        if let Err(why) = check_key(key) {
            errors.push(&at, format!("key {key:?} {why}"));
        }
        if let Err(why) = check_value(value) {
            errors.push(&at, format!("value {value:?} {why}"));
        }
    }
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        if let Err(why) = check_key(&e.key) {
            errors.push(format!("{at}.key"), format!("{:?} {why}", e.key));
        }
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(
                format!("{at}.values"),
                format!("operator {} needs at least one value", e.operator),
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(
                format!("{at}.values"),
                format!("operator {} takes no values, got {values:?}", e.operator),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(
                format!("{at}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            ),
        }
        for (j, v) in values.iter().enumerate() {
            if let Err(why) = check_value(v) {
                errors.push(format!("{at}.values[{j}]"), format!("{v:?} {why}"));
            }
        }
    }
}

/// A qualified name: optional DNS-subdomain prefix (≤ 253) and `/`, then a name (≤ 63).
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() || prefix.len() > 253 {
            return Err("has a prefix that is empty or longer than 253 characters".to_owned());
        }
        let dns_label = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !prefix.split('.').all(dns_label) {
            return Err(format!(
                "has prefix {prefix:?}, which is not a lowercase DNS subdomain"
            ));
        }
    }
    if name.is_empty() {
        return Err("has an empty name part".to_owned());
    }
    check_name(name)
}

/// A label value: empty, or a name of at most 63 characters.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Ok(())
    } else {
        check_name(value)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err(format!(
            "is {} characters long, the limit is 63",
            name.len()
        ));
    }
    let inner_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if inner_ok && ends_ok {
        Ok(())
    } else {
        Err("must be alphanumeric, '-', '_' or '.', and start and end alphanumeric".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: op.to_owned(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("tier", "hot")])),
            match_expressions: Some(vec![
                expr("zone", "In", &["a", "b"]),
                expr("retired", "DoesNotExist", &[]),
            ]),
        };
        assert!(matches(&sel, &labels(&[("tier", "hot"), ("zone", "a")])));
        assert!(!matches(&sel, &labels(&[("tier", "hot"), ("zone", "c")])));
        assert!(!matches(
            &sel,
            &labels(&[("tier", "hot"), ("zone", "a"), ("retired", "")])
        ));
        assert!(!matches(&sel, &labels(&[("tier", "cold"), ("zone", "a")])));
    }

    #[test]
    fn not_in_matches_when_the_key_is_absent() {
        let sel = LabelSelector {
            match_expressions: Some(vec![expr("tier", "NotIn", &["cold"])]),
            ..Default::default()
        };
        assert!(matches(&sel, &labels(&[])));
        assert!(!matches(&sel, &labels(&[("tier", "cold")])));
    }

    #[test]
    fn malformed_selectors_report_every_problem_with_its_path() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("Bad Key", "ok"), ("ok", "-bad")])),
            match_expressions: Some(vec![
                expr("tier", "Equals", &["hot"]),
                expr("tier", "In", &[]),
                expr("tier", "Exists", &["x"]),
                expr("UPPER.example/x", "Exists", &[]),
            ]),
        };
        let mut errors = FieldErrors::default();
        check(&sel, "spec.hotPoolSelector", &mut errors);
        let text = errors.into_result().expect_err("invalid").to_string();
        for needle in [
            "spec.hotPoolSelector.matchLabels[\"Bad Key\"]: key",
            "spec.hotPoolSelector.matchLabels[\"ok\"]: value \"-bad\"",
            "spec.hotPoolSelector.matchExpressions[0].operator: \"Equals\" is not one of",
            "spec.hotPoolSelector.matchExpressions[1].values: operator In needs at least one value",
            "spec.hotPoolSelector.matchExpressions[2].values: operator Exists takes no values",
            "spec.hotPoolSelector.matchExpressions[3].key: \"UPPER.example/x\" has prefix",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn selectors_overlap_unless_provably_disjoint() {
        let by_labels = |pairs: &[(&str, &str)]| LabelSelector {
            match_labels: Some(labels(pairs)),
            ..Default::default()
        };
        let by_expr = |key: &str, op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![expr(key, op, values)]),
            ..Default::default()
        };
        let everything = LabelSelector::default();
        assert!(may_overlap(&everything, &by_labels(&[("app", "db")])));
        assert!(may_overlap(
            &by_labels(&[("app", "db")]),
            &by_labels(&[("team", "x")])
        ));
        assert!(!may_overlap(
            &by_labels(&[("app", "db")]),
            &by_labels(&[("app", "web")])
        ));
        assert!(!may_overlap(
            &by_labels(&[("app", "db")]),
            &by_expr("app", "NotIn", &["db"])
        ));
        assert!(may_overlap(
            &by_labels(&[("app", "db")]),
            &by_expr("app", "NotIn", &["web"])
        ));
        assert!(!may_overlap(
            &by_expr("app", "Exists", &[]),
            &by_expr("app", "DoesNotExist", &[])
        ));
        assert!(!may_overlap(
            &by_expr("app", "In", &["a", "b"]),
            &by_expr("app", "In", &["c"])
        ));
        assert!(may_overlap(
            &by_expr("app", "In", &["a", "b"]),
            &by_expr("app", "In", &["b"])
        ));
    }
}
