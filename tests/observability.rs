//! The dashboard and the automated-canary recipes read metrics the `prometheus` example
//! really exports: the example serves requests and goes through a shutdown that forces a
//! request (so even the forced-close counter exists), and its last scrape, taken while its
//! cleanup runs, must name every metric that `deploy/grafana/zdd.json` and the recipes'
//! Prometheus queries use. The recipes' zdd-check arguments must be accepted by zdd-check.

mod support;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde_json::Value;
use support::*;

/// Every `zdd_…` name in a PromQL query.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    while let Some(found) = query[i..].find("zdd_") {
        let start = i + found;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start
            + query[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(query.len() - start);
        if !preceded {
            names.insert(query[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// The metric names a Prometheus text exposition holds.
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The `prometheus` example's metrics after requests and a shutdown: scraped from its
/// admin listener while its last cleanup hook waits (`FINAL_SCRAPE_WAIT`).
async fn exported_after_a_shutdown() -> BTreeSet<String> {
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let env = [
        ("ZDD_ADMIN_ADDR", admin_addr.as_str()),
        ("ZDD_PROPAGATION_DELAY", "0s"),
        ("ZDD_DRAIN_TIMEOUT", "500ms"),
        ("ZDD_CLEANUP_TIMEOUT", "4s"),
        ("ZDD_GRACE_PERIOD", "10s"),
        ("FINAL_SCRAPE_WAIT", "3s"),
    ];
    let server = Instance::start(
        &example("prometheus"),
        "prometheus",
        "v2",
        free_port(),
        &env,
    );
    for path in ["/", "/", "/nope"] {
        request(server.port, "GET", path).await.expect("answered");
    }
    // Readiness runs its check, which records its status.
    assert_eq!(request(admin, "GET", "/health/ready").await.unwrap().0, 200);
    // A request still running at the drain deadline: forced.
    let port = server.port;
    let slow = tokio::spawn(async move { request(port, "GET", "/slow").await });
    until_in_flight(admin).await;
    server.signal("TERM");
    server.printed("phase=\"cleaning_up\"").await;
    let (status, scrape) = request(admin, "GET", "/metrics").await.expect("scraped");
    assert_eq!(status, 200);
    let _ = slow.await;
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(
        exited.code,
        Some(1),
        "the slow request was forced: {:#?}",
        exited.output
    );
    let names = exported(&scrape);
    assert!(names.contains("zdd_forced_closes_total"), "{scrape}");
    names
}

/// Waits until the admin listener has counted the slow request in flight.
async fn until_in_flight(admin: u16) {
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let (_, scrape) = request(admin, "GET", "/metrics").await.expect("scraped");
        if scrape
            .lines()
            .any(|l| l.starts_with("zdd_in_flight_requests 1"))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never counted: {scrape}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn yaml_documents(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_documents(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for document in yaml_serde::Deserializer::from_str(&text) {
                let value: Value = serde::Deserialize::deserialize(document).unwrap();
                out.push((path.clone(), value));
            }
        }
    }
    out
}

/// The Prometheus queries and zdd-check command lines of the canary recipes.
fn recipe_queries_and_commands() -> (Vec<String>, Vec<Vec<String>>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let (mut queries, mut commands) = (Vec::new(), Vec::new());
    for (_, document) in yaml_documents(&root) {
        match document["kind"].as_str() {
            Some("AnalysisTemplate") => {
                for metric in document["spec"]["metrics"].as_array().into_iter().flatten() {
                    if let Some(query) = metric["provider"]["prometheus"]["query"].as_str() {
                        queries.push(query.to_owned());
                    }
                    let containers =
                        &metric["provider"]["job"]["spec"]["template"]["spec"]["containers"];
                    for container in containers.as_array().into_iter().flatten() {
                        let args = container["args"].as_array().unwrap();
                        commands.push(
                            args.iter()
                                .map(|a| a.as_str().unwrap().to_owned())
                                .collect(),
                        );
                    }
                }
            }
            Some("MetricTemplate") => {
                queries.push(document["spec"]["query"].as_str().unwrap().to_owned());
            }
            Some("Canary") => {
                for hook in document["spec"]["analysis"]["webhooks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let cmd = hook["metadata"]["cmd"].as_str().unwrap();
                    let mut words: Vec<String> =
                        cmd.split_whitespace().map(str::to_owned).collect();
                    assert_eq!(words.remove(0), "zdd-check", "{cmd}");
                    commands.push(words);
                }
            }
            _ => {}
        }
    }
    (queries, commands)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_canary_recipes_read_metrics_the_example_exports() {
    let exported = exported_after_a_shutdown().await;

    // The dashboard: its panels, and every metric its queries use.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/zdd.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("deploy/grafana/zdd.json is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Request rate by version",
        "Error rate by version",
        "p95 latency by version",
        "Traffic share by version",
        "Phase per instance",
        "Requests in flight",
        "Open connections",
        "Drain duration",
        "Forced closes",
        "Probe checks",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            for name in metric_names(expr) {
                if !exported.contains(&name) {
                    problems.push(format!(
                        "dashboard panel {}: {name} is not exported",
                        panel["title"]
                    ));
                }
                used.insert(name);
            }
        }
    }

    // The recipes' Prometheus queries.
    let (queries, commands) = recipe_queries_and_commands();
    assert!(queries.len() >= 4, "{queries:?}");
    for query in &queries {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a recipe query names no zdd metric: {query}"
        );
        for name in names {
            if !exported.contains(&name) {
                problems.push(format!("recipe query: {name} is not exported: {query}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}\nexported: {exported:?}");
    println!(
        "dashboard reads {used:?}; {} recipe queries checked",
        queries.len()
    );

    // The recipes' zdd-check command lines: accepted (not exit 2), pointed at a port where
    // nothing listens, shortened to a second.
    assert_eq!(commands.len(), 2, "{commands:?}");
    let closed = free_port();
    for command in commands {
        let args: Vec<String> = command
            .iter()
            .map(|arg| match arg.as_str() {
                a if a.starts_with("http://") => format!("http://127.0.0.1:{closed}/"),
                "2m" => "1s".to_owned(),
                "{{args.canary-version}}" => "1.1.0".to_owned(),
                a => a.to_owned(),
            })
            .collect();
        let (code, summary) = Checker::judge(
            &args[0],
            &args[1..].iter().map(String::as_str).collect::<Vec<_>>(),
        );
        // Nothing answered: inconclusive (3), never bad input (2).
        assert_eq!(code, Some(3), "{command:?}: {summary}");
        assert_eq!(summary["verdict"]["decision"], "inconclusive", "{summary}");
    }
}

#[test]
fn metric_names_are_read_from_queries() {
    assert_eq!(
        metric_names("sum(rate(zdd_http_requests_total{x=\"a\"}[1m])) / foo_zdd_bar + zdd_phase"),
        BTreeSet::from(["zdd_http_requests_total".to_owned(), "zdd_phase".to_owned()])
    );
}
