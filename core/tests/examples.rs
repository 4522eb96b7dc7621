//! Golden tests over `deploy/examples/`: every valid example deserializes, passes the one
//! validation function, and passes the committed CRDs' CEL rules and schema bounds;
//! every invalid example fails validation with exactly the field paths its header
//! lists (`# expect: ...`) and is also rejected by the API-server side named in its
//! header (`# apiserver: cel|schema`).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use couchestor_core::{
    EcVolume, ErasureCodingPolicy, StorageNode, StoragePolicy, Validate, ValidationErrors,
    VolumeMigration,
};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core/ has a parent")
        .to_path_buf()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> (String, Value) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    (text, value)
}

/// Deserializes into the typed resource of its `kind` and runs the one validation.
fn validate(value: &Value) -> Result<(), ValidationErrors> {
    fn typed<T: serde::de::DeserializeOwned + Validate>(v: &Value) -> Result<(), ValidationErrors> {
        let obj: T = serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("does not deserialize: {e}"));
        obj.validate()
    }
    assert_eq!(value["apiVersion"], "couchestor.io/v1alpha1");
    match value["kind"].as_str() {
        Some("StoragePolicy") => typed::<StoragePolicy>(value),
        Some("ErasureCodingPolicy") => typed::<ErasureCodingPolicy>(value),
        Some("EcVolume") => typed::<EcVolume>(value),
        Some("VolumeMigration") => typed::<VolumeMigration>(value),
        Some("StorageNode") => typed::<StorageNode>(value),
        other => panic!("unknown kind {other:?}"),
    }
}

/// The committed CRD schema for `kind` (so the test covers the deployed artefact).
fn committed_schema(kind: &str) -> Value {
    for path in yaml_files(&repo().join("deploy/crds")) {
        let (_, crd) = load(&path);
        if crd["spec"]["names"]["kind"] == kind {
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        }
    }
    panic!("no committed CRD for {kind}");
}

fn cel_errors(value: &Value) -> Vec<String> {
    let schema = committed_schema(value["kind"].as_str().expect("kind"));
    match kube::core::cel::Validator::new().validate(&schema, value, None) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The OpenAPI bounds the API server checks before CEL (type-level constraints our CRDs
/// use: minimum/maximum, minLength/maxLength, pattern, enum, maxItems, maxProperties).
fn schema_errors(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let (Some(min), Some(v)) = (num("minimum"), value.as_f64())
        && v < min
    {
        out.push(format!("{path}: {v} < minimum {min}"));
    }
    if let (Some(max), Some(v)) = (num("maximum"), value.as_f64())
        && v > max
    {
        out.push(format!("{path}: {v} > maximum {max}"));
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as f64;
        if num("minLength").is_some_and(|m| len < m) {
            out.push(format!("{path}: shorter than minLength"));
        }
        if num("maxLength").is_some_and(|m| len > m) {
            out.push(format!("{path}: longer than maxLength"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            let re = regex_lite::Regex::new(p).expect("schema pattern compiles");
            if !re.is_match(s) {
                out.push(format!("{path}: {s:?} does not match {p}"));
            }
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !value.is_null()
        && !allowed.contains(value)
    {
        out.push(format!("{path}: {value} not in enum"));
    }
    if let Some(items) = value.as_array() {
        if num("maxItems").is_some_and(|m| items.len() as f64 > m) {
            out.push(format!("{path}: more than maxItems"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                schema_errors(item_schema, item, &format!("{path}[{i}]"), out);
            }
        }
    }
    if let Some(map) = value.as_object() {
        if num("maxProperties").is_some_and(|m| map.len() as f64 > m) {
            out.push(format!("{path}: more than maxProperties"));
        }
        for (k, v) in map {
            let child = schema
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
            if let Some(child) = child {
                schema_errors(child, v, &format!("{path}.{k}"), out);
            }
        }
    }
}

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(&format!("# {key}:"))
                .map(|v| v.trim().to_owned())
        })
}

#[test]
fn every_kind_has_a_valid_example() {
    let kinds: BTreeSet<String> = yaml_files(&repo().join("deploy/examples"))
        .iter()
        .map(|p| load(p).1["kind"].as_str().expect("kind").to_owned())
        .collect();
    let expected = [
        "EcVolume",
        "ErasureCodingPolicy",
        "StorageNode",
        "StoragePolicy",
        "VolumeMigration",
    ];
    assert_eq!(kinds, expected.iter().map(|k| (*k).to_owned()).collect());
}

#[test]
fn valid_examples_pass_validation_cel_and_schema() {
    for path in yaml_files(&repo().join("deploy/examples")) {
        let (_, value) = load(&path);
        let name = path.display();
        if let Err(e) = validate(&value) {
            panic!("{name} should be valid: {e}");
        }
        let cel = cel_errors(&value);
        assert!(
            cel.is_empty(),
            "{name}: CEL rejects a valid example: {cel:?}"
        );
        let mut schema = Vec::new();
        schema_errors(
            &committed_schema(value["kind"].as_str().expect("kind")),
            &value,
            "",
            &mut schema,
        );
        assert!(
            schema.is_empty(),
            "{name}: schema rejects a valid example: {schema:?}"
        );
    }
}

#[test]
fn invalid_examples_fail_with_exactly_the_expected_field_paths() {
    let files = yaml_files(&repo().join("deploy/examples/invalid"));
    assert!(
        files.len() >= 8,
        "expected the invalid examples, found {}",
        files.len()
    );
    for path in files {
        let (text, value) = load(&path);
        let name = path.display();
        let expected: BTreeSet<String> = header(&text, "expect")
            .unwrap_or_else(|| panic!("{name} has no `# expect:` header"))
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        let errors = validate(&value).expect_err(&format!("{name} should be invalid"));
        let got: BTreeSet<String> = errors.paths().into_iter().map(str::to_owned).collect();
        assert_eq!(got, expected, "{name}: {errors}");
        // Every message names the offending value or rule, not just the path.
        for e in errors.errors() {
            assert!(
                e.message.len() > 10,
                "{name}: terse message for {}: {:?}",
                e.path,
                e.message
            );
        }
    }
}

#[test]
fn the_api_server_rejects_invalid_examples_without_the_webhook() {
    for path in yaml_files(&repo().join("deploy/examples/invalid")) {
        let (text, value) = load(&path);
        let name = path.display();
        let by = header(&text, "apiserver")
            .unwrap_or_else(|| panic!("{name} has no `# apiserver:` header"));
        let schema = committed_schema(value["kind"].as_str().expect("kind"));
        let mut schema_problems = Vec::new();
        schema_errors(&schema, &value, "", &mut schema_problems);
        let cel = cel_errors(&value);
        match by.as_str() {
            "cel" => assert!(!cel.is_empty(), "{name}: CEL should reject it"),
            "schema" => assert!(
                !schema_problems.is_empty(),
                "{name}: the schema should reject it"
            ),
            other => panic!("{name}: unknown apiserver header {other:?}"),
        }
    }
}

#[test]
fn cel_rules_compile_and_stay_within_the_cost_budget() {
    use kube::core::cel::{ScopeContext, analyze_rule, compile_schema};
    fn walk(schema: &Value, at: &str, rules: &mut usize) {
        if let Some(list) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            let compiled = compile_schema(schema);
            assert!(
                !compiled.has_errors(),
                "{at}: {:?}",
                compiled.compilation_errors()
            );
            for rule in list {
                let text = rule["rule"].as_str().expect("rule text");
                let warnings = analyze_rule(text, &compiled, ScopeContext::CrdValidation);
                assert!(warnings.is_empty(), "{at}: {text}: {warnings:?}");
                *rules += 1;
            }
        }
        for key in ["properties", "additionalProperties", "items"] {
            match schema.get(key) {
                Some(Value::Object(map)) if key == "properties" => {
                    for (k, v) in map {
                        walk(v, &format!("{at}.{k}"), rules);
                    }
                }
                Some(v @ Value::Object(_)) => walk(v, &format!("{at}[]"), rules),
                _ => {}
            }
        }
    }
    let mut rules = 0;
    for path in yaml_files(&repo().join("deploy/crds")) {
        let (_, crd) = load(&path);
        walk(
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            &path.display().to_string(),
            &mut rules,
        );
    }
    assert!(rules >= 15, "only {rules} CEL rules found");
}

#[test]
fn updating_a_frozen_ec_layout_is_rejected_by_cel() {
    let (_, old) = load(&repo().join("deploy/examples/ecvolume.yaml"));
    let mut new = old.clone();
    new["spec"]["layout"]["parityShards"] = Value::from(3);
    let schema = committed_schema("EcVolume");
    let result = kube::core::cel::Validator::new().validate(&schema, &new, Some(&old));
    let errors = result.expect_err("layout change must be rejected");
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("layout is frozen")),
        "{errors:?}"
    );
    assert!(
        kube::core::cel::Validator::new()
            .validate(&schema, &old, Some(&old))
            .is_ok()
    );
}
