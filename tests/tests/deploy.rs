//! The deployable bundle (`deploy/`): every manifest parses strictly into typed objects,
//! the kustomize base and overlays render with the real `kubectl kustomize`, the Helm
//! chart rendered by Helm's own engine equals them, the RBAC is the one `deploy/RBAC.md`
//! justifies, and the images, flags, environment variables, ports and probes are the
//! ones the binaries have.
//!
//! Needs kubectl and Helm's engine (`helm-python-sdk`): `scripts/install-packages`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use clap::CommandFactory;
use couchestor_tests::deploy::{
    deploy, dockerfile,
    manifest::{self, ObjectKey},
    rbac, repo, strict, tools,
};
use serde_json::Value;

const NAMESPACE: &str = "couchestor-system";

/// Each kustomize entry point and the Helm values that must render the same objects.
const VARIANTS: [(&str, Option<&str>); 3] = [
    ("base", None),
    (
        "overlays/cert-manager",
        Some(r#"{"certManager":{"enabled":true}}"#),
    ),
    (
        "overlays/monitoring",
        Some(r#"{"serviceMonitor":{"enabled":true}}"#),
    ),
];

/// The operator's metrics (controller contract); no other component serves /metrics.
const OPERATOR_METRICS: [&str; 6] = [
    "couchestor_migrations_total",
    "couchestor_active_migrations",
    "couchestor_volumes",
    "couchestor_reconcile_duration_seconds",
    "couchestor_reconcile_errors_total",
    "couchestor_prometheus_query_duration_seconds",
];

/// The component images the manifests may use, by Dockerfile target.
const COMPONENTS: [&str; 4] = ["operator", "webhook", "csi-sidecar", "node-agent"];

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn render_kustomize(variant: &str) -> Vec<Value> {
    let dir = deploy().join("kustomize").join(variant);
    let text = tools::kustomize(&dir).unwrap_or_else(|e| panic!("{e}"));
    manifest::parse_stream(&text).unwrap_or_else(|e| panic!("{variant}: {e}"))
}

fn render_helm(namespace: &str, values: Option<&str>) -> Vec<Value> {
    let chart = deploy().join("helm/couchestor");
    let text = tools::helm_template(&chart, namespace, values).unwrap_or_else(|e| panic!("{e}"));
    manifest::parse_stream(&text).unwrap_or_else(|e| panic!("helm output: {e}"))
}

fn check_all(what: &str, objects: &[Value]) {
    let errors: Vec<String> = objects
        .iter()
        .filter_map(|o| {
            strict::check(o).err().map(|e| {
                format!(
                    "{what}: {}: {e}",
                    manifest::key_of(o).map_or_else(|k| k, |k| k.to_string())
                )
            })
        })
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_manifest_file_parses_into_typed_objects_with_no_unknown_fields() {
    let patches = [
        deploy().join("kustomize/mayastor-csi-patch/csi-controller-patch.yaml"),
        deploy().join("kustomize/mayastor-csi-patch/csi-controller-unpatch.yaml"),
    ];
    let mut files = yaml_files(&deploy().join("kustomize"));
    files.extend(yaml_files(&deploy().join("webhook")));
    files.extend(yaml_files(&deploy().join("crds")));
    files.extend(yaml_files(&deploy().join("helm/couchestor/crds")));
    let mut checked = 0;
    for file in files.iter().filter(|f| !patches.contains(f)) {
        let docs = manifest::parse_file(file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!docs.is_empty(), "{} is empty", file.display());
        check_all(&file.display().to_string(), &docs);
        checked += docs.len();
    }
    // The patches are partial Deployments: checked once applied, in
    // the_mayastor_csi_patch_routes_the_provisioner_and_attacher_through_the_sidecar and
    // the_csi_unpatch_restores_mayastor_s_deployment_exactly.
    assert!(checked >= 30, "only {checked} documents found");
}

#[test]
fn the_base_kustomization_lists_every_manifest_in_its_directory() {
    let base = deploy().join("kustomize/base");
    let k = &manifest::parse_file(&base.join("kustomization.yaml")).expect("parses")[0];
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    for file in yaml_files(&base) {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        if name != "kustomization.yaml" {
            assert!(
                listed.contains(&name),
                "{name} is in base/ but not in its kustomization"
            );
        }
    }
    for dir in ["../../crds", "../../webhook"] {
        assert!(listed.contains(dir), "the base must include {dir}");
    }
}

#[test]
fn the_kustomize_base_and_overlays_render_and_parse_strictly() {
    for (variant, _) in VARIANTS {
        let objects = render_kustomize(variant);
        check_all(variant, &objects);
        let keys = manifest::by_key(&objects).unwrap_or_else(|e| panic!("{variant}: {e}"));
        let kinds: BTreeSet<&str> = keys.keys().map(|k| k.kind.as_str()).collect();
        for kind in [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "Role",
            "Deployment",
            "DaemonSet",
            "Service",
            "PodDisruptionBudget",
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            assert!(kinds.contains(kind), "{variant} renders no {kind}");
        }
        // Every namespaced object lives in couchestor-system.
        for key in keys.keys() {
            if let Some(ns) = &key.namespace {
                assert_eq!(ns, NAMESPACE, "{variant}: {key}");
            }
        }
        let crds = keys
            .keys()
            .filter(|k| k.kind == "CustomResourceDefinition")
            .count();
        assert_eq!(crds, 5, "{variant}: every CRD");
    }
}

#[test]
fn helm_renders_the_same_objects_as_kustomize_except_the_namespace() {
    // Documented difference (deploy/README.md): Helm does not own the release namespace
    // (install with --create-namespace), so the chart has no Namespace object.
    let namespace = ObjectKey {
        kind: "Namespace".into(),
        namespace: None,
        name: NAMESPACE.into(),
    };
    for (variant, values) in VARIANTS {
        let kustomized = render_kustomize(variant);
        let helm = render_helm(NAMESPACE, values);
        check_all(&format!("helm {values:?}"), &helm);
        let diff = manifest::diff(
            variant,
            &kustomized,
            "helm",
            &helm,
            std::slice::from_ref(&namespace),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            diff.is_empty(),
            "{variant} vs helm {values:?}:\n{}",
            diff.join("\n")
        );
    }
}

#[test]
fn the_helm_chart_lints_clean_in_strict_mode() {
    let report =
        tools::helm_lint(&deploy().join("helm/couchestor")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.contains("1 chart(s) linted, 0 problem(s)"),
        "{report}"
    );
}

#[test]
fn helm_follows_the_release_namespace_everywhere() {
    let objects = render_helm(
        "tiering",
        Some(r#"{"certManager":{"enabled":true},"serviceMonitor":{"enabled":true}}"#),
    );
    check_all("helm in namespace tiering", &objects);
    let text = serde_json::to_string(&objects).expect("json");
    assert!(
        !text.contains(NAMESPACE),
        "a hard-coded {NAMESPACE} is left in the chart"
    );
    let keys = manifest::by_key(&objects).expect("keys");
    let validating = keys
        .iter()
        .find(|(k, _)| k.kind == "ValidatingWebhookConfiguration")
        .map(|(_, v)| v)
        .expect("validating configuration");
    assert_eq!(
        validating["webhooks"][0]["clientConfig"]["service"]["namespace"],
        "tiering"
    );
    assert_eq!(
        validating["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "tiering/couchestor-webhook"
    );
    let cert = keys
        .iter()
        .find(|(k, _)| k.kind == "Certificate" && k.name == "couchestor-webhook")
        .map(|(_, v)| v)
        .expect("serving certificate");
    assert_eq!(
        cert["spec"]["dnsNames"][0],
        "couchestor-webhook.tiering.svc"
    );
    // The CSI sidecar's binding still names Mayastor's ServiceAccount, not ours.
    let binding = keys
        .iter()
        .find(|(k, _)| k.kind == "ClusterRoleBinding" && k.name == "couchestor-csi-sidecar")
        .map(|(_, v)| v)
        .expect("csi-sidecar binding");
    assert_eq!(binding["subjects"][0]["namespace"], "openebs");
}

#[test]
fn a_missing_kubectl_is_reported_with_the_install_step() {
    let err = tools::kustomize_with(
        "couchestor-no-such-kubectl",
        &deploy().join("kustomize/base"),
    )
    .expect_err("not installed");
    assert!(err.contains("scripts/install-packages"), "{err}");
}

#[test]
fn a_broken_kustomization_fails_to_render_with_kubectl_s_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - missing.yaml\n",
    )
    .expect("write");
    let err = tools::kustomize(dir.path()).expect_err("missing resource");
    assert!(err.contains("missing.yaml"), "{err}");
}

/// A relative path from `from` to the absolute `to` (kustomize wants relative paths).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let ups = from.components().count() - 1;
    let mut p = PathBuf::new();
    for _ in 0..ups {
        p.push("..");
    }
    p.join(to.strip_prefix("/").expect("absolute"))
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    manifest::containers(deployment)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env_value(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

/// Renders `resources` (files copied into a temp dir) plus `components` and `patches`
/// (paths in the repository) with `kubectl kustomize`.
fn kustomize_in_temp(
    resources: &[(&str, &str)],
    components: &[PathBuf],
    patches: &[PathBuf],
) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let here = dir.path().canonicalize().expect("tempdir path");
    let mut k = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for (name, text) in resources {
        std::fs::write(here.join(name), text).expect("write resource");
        k.push_str(&format!("  - {name}\n"));
    }
    if !components.is_empty() {
        k.push_str("components:\n");
        for c in components {
            let rel = relative(&here, &c.canonicalize().expect("component"));
            k.push_str(&format!("  - {}\n", rel.display()));
        }
    }
    if !patches.is_empty() {
        // Patch files must be inside the kustomization root: copy them in.
        k.push_str("patches:\n");
        for (i, p) in patches.iter().enumerate() {
            let name = format!("patch-{i}.yaml");
            std::fs::copy(p, here.join(&name)).expect("copy patch");
            k.push_str(&format!("  - path: {name}\n"));
        }
    }
    std::fs::write(here.join("kustomization.yaml"), k).expect("write kustomization");
    let text = tools::kustomize(&here).unwrap_or_else(|e| panic!("{e}"));
    manifest::parse_stream(&text).expect("parses")
}

fn mayastor_fixture() -> (PathBuf, String) {
    let fixture = repo().join("tests/fixtures/mayastor-csi-controller.yaml");
    let text = std::fs::read_to_string(&fixture).expect("fixture");
    (fixture, text)
}

#[test]
fn the_mayastor_csi_patch_routes_the_provisioner_and_attacher_through_the_sidecar() {
    let (fixture, text) = mayastor_fixture();
    let objects = kustomize_in_temp(
        &[("mayastor.yaml", &text)],
        &[deploy().join("kustomize/mayastor-csi-patch")],
        &[],
    );
    assert_eq!(objects.len(), 1);
    check_all("patched Mayastor CSI controller", &objects);
    let patched = &objects[0];
    let original = &manifest::parse_file(&fixture).expect("fixture")[0];
    assert_ne!(patched, original);

    let sidecar = container(patched, "couchestor-csi-sidecar");
    let listen = env_value(sidecar, "COUCHESTOR_CSI_LISTEN").expect("listen");
    let backend = env_value(sidecar, "COUCHESTOR_CSI_BACKEND").expect("backend");
    let listen_path = couchestor_csi_sidecar::config::parse_unix_endpoint(&listen).expect("listen");
    let backend_path =
        couchestor_csi_sidecar::config::parse_unix_endpoint(&backend).expect("backend");
    for name in ["csi-provisioner", "csi-attacher"] {
        assert_eq!(
            env_value(container(patched, name), "ADDRESS").map(PathBuf::from),
            Some(listen_path.clone()),
            "{name} must dial the sidecar"
        );
    }
    // Mayastor's controller is untouched and is what the sidecar forwards to.
    let mayastor = container(patched, "csi-controller");
    assert_eq!(mayastor, container(original, "csi-controller"));
    let socket = mayastor["args"]
        .as_array()
        .expect("args")
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix("--csi-socket="))
        .expect("--csi-socket");
    assert_eq!(backend_path, PathBuf::from(socket));
    assert_ne!(listen_path, backend_path);
    // The resizer keeps talking to Mayastor directly; every other field is unchanged.
    assert_eq!(
        container(patched, "csi-resizer"),
        container(original, "csi-resizer")
    );
    for name in ["csi-provisioner", "csi-attacher"] {
        assert_eq!(
            container(patched, name)["args"],
            container(original, name)["args"]
        );
    }
    // The socket directory is shared: the sidecar mounts the same volume at the same path.
    let mount = &sidecar["volumeMounts"][0];
    assert_eq!(mount["name"], "socket-dir");
    assert!(listen_path.starts_with(mount["mountPath"].as_str().expect("mountPath")));
    // And its settings are flags the sidecar accepts.
    check_container_flags("couchestor-csi-sidecar", sidecar).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_csi_unpatch_restores_mayastor_s_deployment_exactly() {
    let (fixture, text) = mayastor_fixture();
    let patched = kustomize_in_temp(
        &[("mayastor.yaml", &text)],
        &[deploy().join("kustomize/mayastor-csi-patch")],
        &[],
    );
    let patched_text = serde_yaml::to_string(&patched[0]).expect("yaml");
    let restored = kustomize_in_temp(
        &[("patched.yaml", &patched_text)],
        &[],
        &[deploy().join("kustomize/mayastor-csi-patch/csi-controller-unpatch.yaml")],
    );
    let original = manifest::parse_file(&fixture).expect("fixture");
    assert_eq!(
        restored, original,
        "patch then unpatch must give Mayastor's Deployment back"
    );
}

/// The clap command of a component binary, by binary name (the operator has none yet on
/// this branch: its environment is checked against the controller contract).
fn command_of(binary: &str) -> Option<clap::Command> {
    match binary {
        "couchestor-webhook" => Some(couchestor_webhook::config::Cli::command()),
        "couchestor-csi-sidecar" => Some(couchestor_csi_sidecar::config::Config::command()),
        "couchestor-node-agent" => Some(couchestor_node_agent::config::Config::command()),
        "couchestor-operator" => Some(couchestor_operator::config::Config::command()),
        _ => None,
    }
}

/// Builds the command line the container's args and environment amount to and has the
/// binary's own clap parser accept it: every environment variable must be one the binary
/// reads, every value must parse, every required flag must be set.
fn check_container_flags(binary: &str, container: &Value) -> Result<(), String> {
    let args: Vec<String> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            // Downward-API values are filled by the kubelet; use a plausible one.
            let value = e["value"].as_str().unwrap_or("node-1").to_owned();
            (name, value)
        })
        .collect();
    let command = command_of(binary).ok_or_else(|| format!("{binary}: no such binary"))?;
    // A variable only referenced as `$(NAME)` by another one (the kubelet expands it)
    // need not be read by the binary; the reference is replaced by a plausible value.
    let helpers: BTreeSet<String> = env
        .iter()
        .filter(|(name, _)| env.iter().any(|(_, v)| v.contains(&format!("$({name})"))))
        .map(|(name, _)| name.clone())
        .collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(name, value)| {
            let mut value = value.clone();
            for h in &helpers {
                value = value.replace(&format!("$({h})"), "10.0.0.1");
            }
            (name.clone(), value)
        })
        .collect();
    let mut scope = vec![command.clone()];
    if let Some(sub) = args.first().and_then(|a| command.find_subcommand(a)) {
        scope.push(sub.clone());
    }
    let mut argv = vec![binary.to_owned()];
    argv.extend(args.iter().cloned());
    for (name, value) in &env {
        if helpers.contains(name)
            && !scope
                .iter()
                .flat_map(|c| c.get_arguments())
                .any(|a| a.get_env().is_some_and(|e| e == name.as_str()))
        {
            continue;
        }
        let arg = scope
            .iter()
            .flat_map(|c| c.get_arguments())
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
            .ok_or_else(|| format!("{binary} {args:?} reads no environment variable {name}"))?;
        let long = arg
            .get_long()
            .ok_or_else(|| format!("{binary}: {name} has no long flag"))?;
        if arg.get_action().takes_values() {
            argv.push(format!("--{long}={value}"));
        } else {
            // A switch read from the environment: clap takes true/false, 1/0, yes/no, on/off.
            match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => argv.push(format!("--{long}")),
                "false" | "0" | "no" | "off" | "" => {}
                other => return Err(format!("{binary}: {name}={other} is not a boolean")),
            }
        }
    }
    command
        .try_get_matches_from(&argv)
        .map(|_| ())
        .map_err(|e| format!("{binary} refuses {argv:?}:\n{e}"))
}

fn binary_of_image(image: &str) -> String {
    let target = image
        .strip_prefix("couchestor/")
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("{image} is not a couchestor/<component> image"));
    assert!(
        COMPONENTS.contains(&target),
        "{image}: no Dockerfile target {target}"
    );
    format!("couchestor-{target}")
}

#[test]
fn container_args_and_environment_are_flags_the_binaries_accept() {
    let objects = render_kustomize("base");
    let mut seen = BTreeSet::new();
    for obj in &objects {
        for c in manifest::containers(obj) {
            let binary = binary_of_image(c["image"].as_str().expect("image"));
            check_container_flags(&binary, c).unwrap_or_else(|e| panic!("{e}"));
            seen.insert(binary);
        }
    }
    assert_eq!(
        seen.len(),
        3,
        "operator, webhook and node agent run from the base: {seen:?}"
    );
}

#[test]
fn a_misspelt_environment_variable_is_caught() {
    let container = serde_json::json!({"args": ["serve"], "env": [
        {"name": "COUCHESTOR_LISTEN", "value": "0.0.0.0:8443"},
        {"name": "COUCHESTOR_TLS_CRT", "value": "/x"}]});
    let err = check_container_flags("couchestor-webhook", &container).expect_err("misspelt");
    assert!(err.contains("COUCHESTOR_TLS_CRT"), "{err}");
    let bad_value = serde_json::json!({"args": ["serve"], "env": [
        {"name": "COUCHESTOR_LISTEN", "value": "not-an-address"}]});
    assert!(check_container_flags("couchestor-webhook", &bad_value).is_err());
}

fn port_of(addr: &str) -> i64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("host:port")
}

fn named_port(container: &Value, name: &str) -> i64 {
    container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no port {name}"))
}

#[test]
fn probes_and_services_point_at_what_the_components_serve() {
    let objects = render_kustomize("base");
    let keys = manifest::by_key(&objects).expect("keys");
    let get = |kind: &str, name: &str| {
        keys.get(&ObjectKey {
            kind: kind.into(),
            namespace: Some(NAMESPACE.into()),
            name: name.into(),
        })
        .unwrap_or_else(|| panic!("no {kind} {name}"))
    };

    let operator = manifest::containers(get("Deployment", "couchestor-operator"))[0];
    let http = named_port(operator, "http");
    assert_eq!(
        http,
        port_of(&env_value(operator, "COUCHESTOR_HTTP_ADDR").expect("addr"))
    );
    assert_eq!(operator["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(operator["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        get("Deployment", "couchestor-operator")["spec"]["replicas"],
        2
    );
    let names: BTreeSet<&str> = operator["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter(|e| e["valueFrom"]["fieldRef"].is_object())
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["POD_NAME", "POD_NAMESPACE"]),
        "downward API"
    );

    let webhook = manifest::containers(get("Deployment", "couchestor-webhook"))[0];
    let https = named_port(webhook, "https");
    assert_eq!(
        https,
        port_of(&env_value(webhook, "COUCHESTOR_LISTEN").expect("listen"))
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(webhook[probe]["httpGet"]["path"], path);
        assert_eq!(webhook[probe]["httpGet"]["scheme"], "HTTPS");
    }
    assert_eq!(
        get("Deployment", "couchestor-webhook")["spec"]["replicas"],
        2
    );
    let service = get("Service", "couchestor-webhook");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
    let service_port = service["spec"]["ports"][0]["port"].clone();
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let cfg = keys
            .iter()
            .find(|(k, _)| k.kind == kind)
            .map(|(_, v)| v)
            .expect("configuration");
        for hook in cfg["webhooks"].as_array().expect("webhooks") {
            let svc = &hook["clientConfig"]["service"];
            assert_eq!(svc["name"], "couchestor-webhook");
            assert_eq!(svc["namespace"], NAMESPACE);
            assert_eq!(svc["port"], service_port);
        }
    }
    // The TLS files the webhook reads are in the mounted Secret.
    let mount = webhook["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("mount");
    for var in ["COUCHESTOR_TLS_CERT", "COUCHESTOR_TLS_KEY"] {
        assert!(
            env_value(webhook, var).expect(var).starts_with(mount),
            "{var}"
        );
    }

    let agent = manifest::containers(get("DaemonSet", "couchestor-node-agent"))[0];
    let grpc = named_port(agent, "grpc");
    assert_eq!(
        grpc,
        port_of(&env_value(agent, "COUCHESTOR_AGENT_LISTEN").expect("listen"))
    );
    assert_eq!(agent["livenessProbe"]["tcpSocket"]["port"], "grpc");
    assert_eq!(agent["securityContext"]["privileged"], false);
    let mounts: BTreeMap<&str, bool> = agent["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().expect("path"),
                m["readOnly"] == true,
            )
        })
        .collect();
    for ro in ["/sys", "/dev", "/run/udev"] {
        assert_eq!(
            mounts.get(ro),
            Some(&true),
            "{ro} must be mounted read-only"
        );
    }
    let writable: Vec<&&str> = mounts
        .iter()
        .filter(|(_, ro)| !**ro)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        writable,
        vec![&"/var/lib/couchestor"],
        "one writable host directory"
    );
    for var in ["COUCHESTOR_AGENT_DISKS", "COUCHESTOR_AGENT_INDEX"] {
        assert!(
            env_value(agent, var)
                .expect(var)
                .starts_with("/var/lib/couchestor/")
        );
    }

    for pdb in ["couchestor-operator", "couchestor-webhook"] {
        assert_eq!(get("PodDisruptionBudget", pdb)["spec"]["minAvailable"], 1);
    }
    for obj in &objects {
        for c in manifest::containers(obj) {
            for side in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    assert!(
                        c["resources"][side][res].is_string(),
                        "{}: {side}.{res}",
                        c["name"]
                    );
                }
            }
        }
    }
}

#[test]
fn the_webhook_serves_the_probe_paths_the_manifests_use() {
    use couchestor_webhook::{index::Index, server};
    use tower::ServiceExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        for (index, ready) in [(Index::synced(), 200), (Index::unsynced(), 503)] {
            let app = server::router(index, &server::Options::default());
            for (path, want) in [("/healthz", 200), ("/readyz", ready)] {
                let request = axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .expect("request");
                let response = app.clone().oneshot(request).await.expect("response");
                assert_eq!(response.status().as_u16(), want, "{path}");
            }
        }
    });
}

fn cargo_bins() -> BTreeMap<String, (String, Vec<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let bins = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "bin"))
                })
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect();
            let name = p["name"].as_str().expect("name").to_owned();
            (
                name,
                (p["version"].as_str().expect("version").to_owned(), bins),
            )
        })
        .collect()
}

#[test]
fn dockerfile_targets_run_the_binaries_the_crates_build() {
    let text = std::fs::read_to_string(deploy().join("docker/Dockerfile")).expect("Dockerfile");
    let stages = dockerfile::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let bins = cargo_bins();
    let builder = stages
        .iter()
        .find(|s| s.name.as_deref() == Some("builder"))
        .expect("a builder stage");
    let build = builder.runs.join(" ");
    for target in COMPONENTS {
        let package = format!("couchestor-{target}");
        let binary = package.clone();
        let stage = stages
            .iter()
            .find(|s| s.name.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("no Dockerfile target {target}"));
        let path = format!("/usr/local/bin/{binary}");
        assert_eq!(
            stage.entrypoint,
            Some(vec![path.clone()]),
            "{target}: entrypoint"
        );
        assert!(
            stage
                .copies
                .iter()
                .any(|c| c.from_stage.as_deref() == Some("builder")
                    && c.sources == [format!("/out/{binary}")]
                    && c.dest == path),
            "{target}: copies /out/{binary} from the builder to {path}"
        );
        assert!(
            build.contains(&format!("-p {package}")),
            "the builder builds {package}"
        );
        assert!(
            build.contains(&format!("target/release/{binary}")),
            "the builder keeps {binary}"
        );
        let (_, crate_bins) = bins
            .get(&package)
            .unwrap_or_else(|| panic!("no package {package}"));
        assert!(
            crate_bins.contains(&binary),
            "{package} builds {crate_bins:?}, not {binary}"
        );
    }
}

#[test]
fn images_name_dockerfile_targets_and_carry_the_workspace_version() {
    let bins = cargo_bins();
    let (version, _) = bins.get("couchestor-webhook").expect("webhook package");
    let chart =
        &manifest::parse_file(&deploy().join("helm/couchestor/Chart.yaml")).expect("chart")[0];
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(version.as_str()),
        "Chart appVersion"
    );
    let mut objects = render_kustomize("base");
    objects.extend(
        manifest::parse_file(
            &deploy().join("kustomize/mayastor-csi-patch/csi-controller-patch.yaml"),
        )
        .expect("patch"),
    );
    let mut images = BTreeSet::new();
    for obj in &objects {
        for c in manifest::containers(obj) {
            // Containers of the patch that only change env carry no image.
            let Some(image) = c["image"].as_str() else {
                continue;
            };
            if !image.starts_with("couchestor/") {
                continue;
            }
            binary_of_image(image);
            assert!(
                image.ends_with(&format!(":{version}")),
                "{image} is not tagged {version}"
            );
            images.insert(image.to_owned());
        }
    }
    assert_eq!(images.len(), 4, "one image per component: {images:?}");
}

#[test]
fn rbac_md_justifies_exactly_the_grants_the_manifests_make() {
    let text = std::fs::read_to_string(deploy().join("RBAC.md")).expect("RBAC.md");
    let documented = rbac::from_markdown(&text).unwrap_or_else(|e| panic!("{e}"));
    let shipped = rbac::from_objects(&render_kustomize("base")).unwrap_or_else(|e| panic!("{e}"));
    let undocumented: Vec<_> = shipped.difference(&documented).collect();
    let unshipped: Vec<_> = documented.difference(&shipped).collect();
    assert!(
        undocumented.is_empty(),
        "granted but not justified in RBAC.md: {undocumented:#?}"
    );
    assert!(
        unshipped.is_empty(),
        "in RBAC.md but not granted: {unshipped:#?}"
    );
    assert!(
        shipped.iter().all(|g| g.verb != "*" && g.resource != "*"),
        "no wildcards"
    );
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_that_are_exported() {
    let text =
        std::fs::read_to_string(deploy().join("grafana/couchestor.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let mut exprs = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(e) = m.get("expr").and_then(Value::as_str) {
                    out.push(e);
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 6, "{} queries", exprs.len());
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let mut rest = *expr;
        while let Some(at) = rest.find("couchestor_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| OPERATOR_METRICS.contains(b))
                .unwrap_or(name.as_str())
                .to_owned();
            assert!(
                OPERATOR_METRICS.contains(&base.as_str()),
                "{expr}: {name} is not exported"
            );
            used.insert(base);
        }
    }
    assert_eq!(
        used.len(),
        OPERATOR_METRICS.len(),
        "every exported metric has a panel: {used:?}"
    );
}
