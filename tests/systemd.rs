//! The systemd recipe in `deploy/systemd/`: a socket unit and a `Type=notify` service whose
//! settings fit what zdd does (notifications, `SIGHUP` upgrades, the grace period). `.ci/run`
//! also runs `systemd-analyze verify` on them.

use std::{collections::BTreeMap, path::Path, time::Duration};

/// A unit file's settings: `section.key` → values, in order (keys may repeat).
fn unit(name: &str) -> BTreeMap<String, Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/systemd")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut section = String::new();
    let mut settings = BTreeMap::<String, Vec<String>>::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}: not a setting: {line:?}"));
        settings
            .entry(format!("{section}.{}", key.trim()))
            .or_default()
            .push(value.trim().to_owned());
    }
    settings
}

fn one<'a>(settings: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match settings.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{key}: expected one value, found {other:?}"),
    }
}

#[test]
fn the_service_fits_zdd() {
    let service = unit("app.service");
    let socket = unit("app.socket");

    assert_eq!(one(&service, "Service.Type"), "notify", "zdd sends READY=1");
    assert_eq!(
        one(&service, "Service.NotifyAccess"),
        "all",
        "an upgrade's new process says READY=1 before it is the main process"
    );
    assert!(one(&service, "Service.ExecReload").contains("kill -HUP $MAINPID"));
    assert_eq!(one(&service, "Unit.Requires"), "app.socket");
    assert!(one(&socket, "Socket.ListenStream").ends_with("3000"));
    assert_eq!(one(&socket, "Socket.FileDescriptorName"), "public");

    let env: BTreeMap<String, String> = service["Service.Environment"]
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(env.get("PORT").map(String::as_str), Some("3000"));
    let config = zdd::Config::builder()
        .with_env_from(|key| env.get(key).cloned())
        .and_then(zdd::ConfigBuilder::build)
        .expect("the Environment= settings make a valid zdd configuration");
    assert_eq!(
        config.propagation_delay(),
        Duration::ZERO,
        "nothing in front of the service needs to notice"
    );
    let stop = humantime::parse_duration(one(&service, "Service.TimeoutStopSec")).unwrap();
    assert!(
        config.grace_period() <= stop,
        "ZDD_GRACE_PERIOD {:?} exceeds TimeoutStopSec {stop:?}",
        config.grace_period()
    );
}
