//! The Kubernetes recipes in `deploy/kubernetes/`: every manifest parses as its Kubernetes
//! type with no unknown or misspelled field, the probes point at zdd's paths on the admin
//! port with settings that fit zdd, the preStop hook calls `/prestop` there, the container
//! exposes that port, and zdd's configured timings fit each pod's grace period. The gRPC
//! recipe's native `grpc:` probes ask the health services zdd-tonic's example maps
//! (`""` readiness, `liveness`, `startup`) on the admin port.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Container, HTTPGetAction, Probe, Service},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn manifests() -> Vec<(PathBuf, Value)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes"),
        &mut files,
    );
    files.sort();
    files
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            yaml_serde::Deserializer::from_str(&text)
                .map(|document| {
                    let value = serde::Deserialize::deserialize(document)
                        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
                    (path.clone(), value)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every field of `original` survives a round trip through the typed object, with the
/// same value: a field that does not survive is unknown to Kubernetes (often a typo).
fn missing_fields(original: &Value, round_trip: &Value, at: &str, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => missing_fields(value, other, &format!("{at}.{key}"), out),
                    None => out.push(format!("{at}.{key}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                missing_fields(x, y, &format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{at} ({a} became {b})")),
    }
}

fn strict<T: DeserializeOwned + Serialize>(document: &Value) -> Result<T, String> {
    let typed: T = serde_json::from_value(document.clone()).map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    missing_fields(
        document,
        &serde_json::to_value(&typed).unwrap(),
        "",
        &mut missing,
    );
    if missing.is_empty() {
        Ok(typed)
    } else {
        Err(format!("unknown or changed fields: {missing:?}"))
    }
}

fn probe_path(probe: Option<&Probe>) -> Option<&str> {
    probe?.http_get.as_ref()?.path.as_deref()
}

/// The container port number an HTTP action's port names (by name or number).
fn port_number(container: &Container, action: &HTTPGetAction) -> Option<i32> {
    let ports = container.ports.iter().flatten();
    match &action.port {
        IntOrString::Int(number) => ports.map(|p| p.container_port).find(|p| p == number),
        IntOrString::String(name) => ports
            .filter(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .next(),
    }
}

/// Where an HTTP action goes, checked against the admin listener's port.
fn check_admin_port(
    container: &Container,
    action: Option<&HTTPGetAction>,
    what: &str,
    admin_port: Option<u16>,
    problems: &mut Vec<String>,
) {
    let Some(action) = action else {
        problems.push(format!("{what}: not an httpGet"));
        return;
    };
    let Some(admin_port) = admin_port else {
        problems.push(format!(
            "{what}: no ZDD_ADMIN_ADDR, so no admin port to use"
        ));
        return;
    };
    match port_number(container, action) {
        Some(port) if i64::from(port) == i64::from(admin_port) => {}
        Some(port) => problems.push(format!(
            "{what}: port {:?} is {port}, not the admin port {admin_port}",
            action.port
        )),
        None => problems.push(format!(
            "{what}: port {:?} is not a port the container exposes",
            action.port
        )),
    }
}

/// The problems of one Deployment's pod against zdd's rules.
fn check_deployment(deployment: &Deployment) -> Vec<String> {
    let mut problems = Vec::new();
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template");
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    let container: &Container = &pod.containers[0];
    // What the container sees in a cluster: its env, and KUBERNETES_SERVICE_HOST.
    let mut env: BTreeMap<String, String> = container
        .env
        .iter()
        .flatten()
        .filter_map(|var| Some((var.name.clone(), var.value.clone()?)))
        .collect();
    env.insert("KUBERNETES_SERVICE_HOST".to_owned(), "10.96.0.1".to_owned());
    let config = match zdd::Config::builder()
        .with_env_from(|key| env.get(key).cloned())
        .and_then(|b| b.build())
    {
        Ok(config) => config,
        Err(error) => return vec![format!("zdd configuration: {error}")],
    };
    let admin_port = config.admin_addr().map(|addr| addr.port());
    if config.grace_period().as_secs() > u64::try_from(grace).unwrap_or(0) {
        problems.push(format!(
            "ZDD_GRACE_PERIOD {:?} exceeds terminationGracePeriodSeconds {grace}",
            config.grace_period()
        ));
    }
    for (probe, path, grpc_service) in [
        (container.readiness_probe.as_ref(), "/health/ready", ""),
        (
            container.liveness_probe.as_ref(),
            "/health/live",
            "liveness",
        ),
        (
            container.startup_probe.as_ref(),
            "/health/startup",
            "startup",
        ),
    ] {
        // A gRPC probe: the health service name zdd-tonic's example maps to this probe,
        // on the admin port (`serve_with_health` mounts the health service there).
        if let Some(grpc) = probe.and_then(|p| p.grpc.as_ref()) {
            let service = grpc.service.as_deref().unwrap_or_default();
            if service != grpc_service {
                problems.push(format!(
                    "gRPC probe for {path} asks service {service:?}, not {grpc_service:?}"
                ));
            }
            let exposed = container
                .ports
                .iter()
                .flatten()
                .any(|port| port.container_port == grpc.port);
            match admin_port {
                Some(admin) if i64::from(grpc.port) == i64::from(admin) && exposed => {}
                Some(admin) => problems.push(format!(
                    "gRPC probe for {path}: port {} is not the exposed admin port {admin}",
                    grpc.port
                )),
                None => problems.push(format!(
                    "gRPC probe for {path}: no ZDD_ADMIN_ADDR, so no admin port to use"
                )),
            }
            continue;
        }
        if probe_path(probe) != Some(path) {
            problems.push(format!(
                "probe for {path} points at {:?}",
                probe_path(probe)
            ));
        }
        check_admin_port(
            container,
            probe.and_then(|p| p.http_get.as_ref()),
            &format!("probe for {path}"),
            admin_port,
            &mut problems,
        );
        // zdd's checks time out at 800 ms; the probe must wait longer than that.
        if let Some(probe) = probe
            && probe.timeout_seconds.unwrap_or(1) < 1
        {
            problems.push(format!(
                "{path}: timeoutSeconds below zdd's 800 ms check timeout"
            ));
        }
    }
    // preStop: zdd's own endpoint on the admin port, with nothing waited before it.
    let prestop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.http_get.as_ref());
    if prestop.and_then(|a| a.path.as_deref()) != Some("/prestop") {
        problems.push(format!(
            "preStop hook calls {:?}, not /prestop",
            prestop.and_then(|a| a.path.as_deref())
        ));
    }
    check_admin_port(
        container,
        prestop,
        "preStop hook",
        admin_port,
        &mut problems,
    );
    if !config.prestop_delay().is_zero() {
        problems.push(format!(
            "ZDD_PRESTOP_DELAY {:?} with the /prestop hook: the hook waits the propagation delay itself, nothing was waited before it",
            config.prestop_delay()
        ));
    }
    // Kubelet must see readiness fail before the listener closes.
    if let Some(ready) = container.readiness_probe.as_ref() {
        let detection = u64::try_from(
            ready.period_seconds.unwrap_or(10) * ready.failure_threshold.unwrap_or(3),
        )
        .unwrap_or(u64::MAX);
        let delay = config.propagation_delay_after(zdd::Trigger::PreStop);
        if detection > delay.as_secs() {
            problems.push(format!(
                "readiness needs up to {detection}s to fail, more than the propagation delay {delay:?}"
            ));
        }
    }
    problems
}

#[test]
fn every_manifest_is_valid_and_fits_zdd() {
    let manifests = manifests();
    assert!(
        manifests.len() >= 9,
        "expected the rolling, blue-green and canary recipes, found {}",
        manifests.len()
    );
    let mut problems = Vec::new();
    let mut kinds = BTreeMap::<String, usize>::new();
    let mut subsets = Vec::new();
    // (kind, name) of every object, and of every object another refers to.
    let mut defined: Vec<(String, String)> = Vec::new();
    let mut referenced: Vec<(&str, String)> = Vec::new();
    for (path, document) in &manifests {
        let name = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(path)
            .display()
            .to_string();
        let kind = document["kind"].as_str().unwrap_or_default().to_owned();
        *kinds.entry(kind.clone()).or_default() += 1;
        let found = match kind.as_str() {
            "Deployment" => strict::<Deployment>(document).map(|d| check_deployment(&d)),
            "Service" => strict::<Service>(document).map(|_| Vec::new()),
            // Istio's types are not in k8s-openapi: check what the recipe relies on.
            "DestinationRule" => {
                subsets.extend(
                    document["spec"]["subsets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["name"].as_str().map(str::to_owned)),
                );
                Ok(Vec::new())
            }
            "VirtualService" => {
                let routes = document["spec"]["http"][0]["route"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let total: u64 = routes.iter().filter_map(|r| r["weight"].as_u64()).sum();
                let mut found = Vec::new();
                if total != 100 {
                    found.push(format!("route weights add up to {total}, not 100"));
                }
                for route in &routes {
                    let subset = route["destination"]["subset"].as_str().unwrap_or_default();
                    if !subsets.iter().any(|s| s == subset) {
                        found.push(format!(
                            "subset {subset:?} is not defined by a DestinationRule before it"
                        ));
                    }
                }
                Ok(found)
            }
            // Argo Rollouts and Flagger (their types are not in k8s-openapi): the pod
            // template is a Deployment's and held to the same rules; names they refer to
            // must be defined.
            "Rollout" => {
                let steps = document["spec"]["strategy"]["canary"]["steps"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for step in &steps {
                    if let Some(name) = step["analysis"]["templates"][0]["templateName"].as_str() {
                        referenced.push(("AnalysisTemplate", name.to_owned()));
                    }
                }
                let weights: Vec<u64> = steps
                    .iter()
                    .filter_map(|s| s["setWeight"].as_u64())
                    .collect();
                let mut found = Vec::new();
                if weights != [5, 25, 50] {
                    found.push(format!(
                        "canary stages {weights:?}, not 5, 25, 50 (then 100)"
                    ));
                }
                let deployment = serde_json::json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": document["metadata"],
                    "spec": {
                        "replicas": document["spec"]["replicas"],
                        "selector": document["spec"]["selector"],
                        "template": document["spec"]["template"],
                    },
                });
                strict::<Deployment>(&deployment).map(|d| {
                    found.extend(check_deployment(&d));
                    found
                })
            }
            "Canary" => {
                let analysis = &document["spec"]["analysis"];
                for metric in analysis["metrics"].as_array().into_iter().flatten() {
                    if let Some(name) = metric["templateRef"]["name"].as_str() {
                        referenced.push(("MetricTemplate", name.to_owned()));
                    }
                }
                if let Some(name) = document["spec"]["targetRef"]["name"].as_str() {
                    referenced.push(("Deployment", name.to_owned()));
                }
                let weights = &analysis["stepWeights"];
                Ok(match *weights == serde_json::json!([5, 25, 50]) {
                    true => Vec::new(),
                    false => vec![format!("canary stages {weights}, not 5, 25, 50")],
                })
            }
            "AnalysisTemplate" | "MetricTemplate" => Ok(Vec::new()),
            other => Err(format!("unexpected kind {other:?}")),
        };
        if let Some(name) = document["metadata"]["name"].as_str() {
            defined.push((kind.clone(), name.to_owned()));
        }
        match found {
            Ok(found) => problems.extend(found.into_iter().map(|p| format!("{name}: {p}"))),
            Err(error) => problems.push(format!("{name}: {error}")),
        }
    }
    for (kind, name) in &referenced {
        if !defined.iter().any(|(k, n)| k == kind && n == name) {
            problems.push(format!("{kind} {name:?} is referred to but not defined"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(kinds.get("Deployment"), Some(&7), "{kinds:?}");
    assert_eq!(kinds.get("Rollout"), Some(&1), "{kinds:?}");
    assert_eq!(kinds.get("Canary"), Some(&1), "{kinds:?}");
    assert_eq!(kinds.get("VirtualService"), Some(&1), "{kinds:?}");
}

#[test]
fn the_checks_catch_a_typo_and_a_budget_that_does_not_fit() {
    let (_, rolling) = manifests()
        .into_iter()
        .find(|(p, d)| p.ends_with("rolling/app.yaml") && d["kind"] == "Deployment")
        .unwrap();

    let mut typo = rolling.clone();
    typo["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = Value::from(30);
    let error = strict::<Deployment>(&typo).unwrap_err();
    assert!(error.contains("terminationGracePeriodSecond"), "{error}");

    let mut too_long = rolling.clone();
    too_long["spec"]["template"]["spec"]["containers"][0]["env"][3]["value"] = Value::from("40s");
    assert_eq!(
        too_long["spec"]["template"]["spec"]["containers"][0]["env"][3]["name"],
        "ZDD_DRAIN_TIMEOUT"
    );
    let problems = check_deployment(&strict::<Deployment>(&too_long).unwrap());
    assert_eq!(
        problems,
        [
            "zdd configuration: propagation 5s + drain 40s + force wait 1s + cleanup 3s + margin 1s = 50s exceeds grace period 30s"
        ]
    );

    // Probes and hook on the public port, and a preStop sleep counted twice.
    let mut public = rolling.clone();
    let container = &mut public["spec"]["template"]["spec"]["containers"][0];
    container["readinessProbe"]["httpGet"]["port"] = Value::from("http");
    container["lifecycle"]["preStop"]["httpGet"]["port"] = Value::from(3000);
    container["env"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "ZDD_PRESTOP_DELAY", "value": "5s"}));
    let problems = check_deployment(&strict::<Deployment>(&public).unwrap());
    assert_eq!(
        problems,
        [
            r#"probe for /health/ready: port String("http") is 3000, not the admin port 9000"#,
            "preStop hook: port Int(3000) is 3000, not the admin port 9000",
            "ZDD_PRESTOP_DELAY 5s with the /prestop hook: the hook waits the propagation delay itself, nothing was waited before it",
        ]
    );

    // The admin port not exposed by the container.
    let mut hidden = rolling.clone();
    hidden["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array_mut()
        .unwrap()
        .retain(|port| port["name"] != "admin");
    let problems = check_deployment(&strict::<Deployment>(&hidden).unwrap());
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.ends_with(r#"port String("admin") is not a port the container exposes"#)),
        "{problems:#?}"
    );

    let mut short_grace = rolling;
    short_grace["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = Value::from(20);
    let problems = check_deployment(&strict::<Deployment>(&short_grace).unwrap());
    assert_eq!(
        problems,
        ["ZDD_GRACE_PERIOD 30s exceeds terminationGracePeriodSeconds 20"]
    );

    // The gRPC recipe: a probe asking the wrong health service, or on a port that is not
    // the gRPC one.
    let (_, grpc) = manifests()
        .into_iter()
        .find(|(p, d)| p.ends_with("grpc/app.yaml") && d["kind"] == "Deployment")
        .unwrap();
    assert!(check_deployment(&strict::<Deployment>(&grpc).unwrap()).is_empty());
    let mut wrong = grpc;
    let container = &mut wrong["spec"]["template"]["spec"]["containers"][0];
    container["livenessProbe"]["grpc"]["service"] = Value::from("");
    container["readinessProbe"]["grpc"]["port"] = Value::from(50051);
    let problems = check_deployment(&strict::<Deployment>(&wrong).unwrap());
    assert_eq!(
        problems,
        [
            "gRPC probe for /health/ready: port 50051 is not the exposed admin port 9000",
            r#"gRPC probe for /health/live asks service "", not "liveness""#,
        ]
    );
}
