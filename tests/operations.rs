//! The operations guide's settings (`docs/operations.md`): every `env` block builds a zdd
//! configuration, names the four timings, and orders idle timeouts so the balancer closes
//! first; the summary table says what the blocks say.

use std::{collections::BTreeMap, path::Path, time::Duration};

use zdd::Config;

/// The server idle timeout of zdd's serve loop (`Serve::idle_timeout`'s default).
const ZDD_IDLE_TIMEOUT: Duration = Duration::from_secs(620);

struct Recipe {
    name: String,
    env: BTreeMap<String, String>,
    balancer_idle: Option<Duration>,
}

fn guide() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
        .expect("docs/operations.md")
}

fn recipes() -> Vec<Recipe> {
    let text = guide();
    let mut recipes = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```env" {
            continue;
        }
        let mut recipe = Recipe {
            name: String::new(),
            env: BTreeMap::new(),
            balancer_idle: None,
        };
        for line in lines.by_ref().take_while(|l| l.trim() != "```") {
            if let Some(comment) = line.strip_prefix("# ") {
                if recipe.name.is_empty() {
                    recipe.name = comment.to_owned();
                } else if let Some(idle) = comment.strip_prefix("balancer idle timeout: ") {
                    let value = idle.split_whitespace().next().unwrap();
                    recipe.balancer_idle = humantime::parse_duration(value).ok();
                }
            } else if let Some((key, value)) = line.split_once('=') {
                recipe.env.insert(key.to_owned(), value.to_owned());
            } else {
                assert!(
                    line.trim().is_empty(),
                    "{}: unexpected line {line:?}",
                    recipe.name
                );
            }
        }
        recipes.push(recipe);
    }
    recipes
}

fn config(recipe: &Recipe) -> Config {
    Config::builder()
        .with_env_from(|key| recipe.env.get(key).cloned())
        .and_then(zdd::ConfigBuilder::build)
        .unwrap_or_else(|e| panic!("{}: {e}", recipe.name))
}

#[test]
fn every_recipe_builds_and_fits_its_grace_period() {
    let recipes = recipes();
    assert_eq!(
        recipes.len(),
        8,
        "one block per place a service runs behind"
    );
    for recipe in &recipes {
        for key in [
            "ZDD_PROPAGATION_DELAY",
            "ZDD_DRAIN_TIMEOUT",
            "ZDD_CLEANUP_TIMEOUT",
            "ZDD_GRACE_PERIOD",
        ] {
            assert!(
                recipe.env.contains_key(key),
                "{}: sets no {key}",
                recipe.name
            );
        }
        let config = config(recipe);
        assert!(
            config.propagation_delay() + config.drain_timeout() + config.cleanup_timeout()
                <= config.grace_period(),
            "{}",
            recipe.name
        );
    }
}

#[test]
fn the_balancer_always_closes_idle_connections_first() {
    for recipe in recipes() {
        if let Some(idle) = recipe.balancer_idle {
            assert!(
                idle < ZDD_IDLE_TIMEOUT,
                "{}: balancer idle {idle:?} is not below zdd's {ZDD_IDLE_TIMEOUT:?}",
                recipe.name
            );
        }
    }
}

#[test]
fn the_summary_table_says_what_the_blocks_say() {
    let text = guide();
    let recipes = recipes();
    let find = |name: &str| {
        recipes
            .iter()
            .find(|r| r.name.starts_with(name))
            .unwrap_or_else(|| panic!("no block for {name}"))
    };
    // Each table row: its link text names the block(s); its cells give the settings.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| [") && l.contains("](#"))
        .collect();
    assert_eq!(rows.len(), 7, "{rows:#?}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let link = &cells[1][1..cells[1].find(']').unwrap()];
        let blocks: Vec<&Recipe> = if link.starts_with("AWS") {
            vec![
                find("AWS Application Load Balancer"),
                find("AWS Network Load Balancer"),
            ]
        } else {
            vec![find(link.split(" (").next().unwrap())]
        };
        for (column, key) in [
            (2, "ZDD_PROPAGATION_DELAY"),
            (3, "ZDD_DRAIN_TIMEOUT"),
            (4, "ZDD_GRACE_PERIOD"),
        ] {
            for block in &blocks {
                assert!(
                    cells[column].contains(&block.env[key]),
                    "{link}: the table says {:?} for {key}, the block {:?}",
                    cells[column],
                    block.env[key]
                );
            }
        }
    }
}
