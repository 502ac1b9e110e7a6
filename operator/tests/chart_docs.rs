//! Keeps the Helm chart's documentation and files in step with its schema (no cluster needed).

use std::path::PathBuf;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn leaf_paths(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    match schema.get("properties").and_then(Value::as_object) {
        Some(props) => {
            for (key, sub) in props {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                leaf_paths(sub, &path, out);
            }
        }
        None => out.push(prefix.to_string()),
    }
}

fn schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("charts/switchyard/values.schema.json")).unwrap())
        .unwrap()
}

#[test]
fn every_value_in_the_schema_is_documented() {
    let mut paths = Vec::new();
    leaf_paths(&schema(), "", &mut paths);
    assert!(paths.len() > 20, "schema walk found only {paths:?}");
    let docs = std::fs::read_to_string(repo().join("docs/install.md")).unwrap();
    let missing: Vec<_> = paths.iter().filter(|p| !docs.contains(&format!("`{p}`"))).collect();
    assert!(missing.is_empty(), "docs/install.md values reference lacks {missing:?}");
}

#[test]
fn every_default_value_is_in_the_schema() {
    // The schema forbids unknown keys, so a key in values.yaml missing from the schema would
    // make the chart uninstallable with its own defaults.
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("charts/switchyard/values.yaml")).unwrap()).unwrap();
    fn walk(values: &Value, schema: &Value, path: &str) {
        let Some(obj) = values.as_object() else { return };
        let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
        for (k, v) in obj {
            let sub = props.get(k).unwrap_or_else(|| panic!("values.yaml key {path}{k} is not in values.schema.json"));
            walk(v, sub, &format!("{path}{k}."));
        }
    }
    walk(&values, &schema(), "");
}

#[test]
fn the_chart_ships_the_generated_crd() {
    let chart = std::fs::read_to_string(repo().join("charts/switchyard/crds/realtimecluster.yaml")).unwrap();
    assert_eq!(chart, switchyard_operator::crd::crd_yaml(), "run: bash scripts/k8s-check-generated.sh --write");
}
