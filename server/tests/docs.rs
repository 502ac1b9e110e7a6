//! The README's configuration table lists every setting the server reads, and nothing else.

use clap::CommandFactory;
use switchyard_server::Config;

fn all_args(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect()
}

#[test]
fn readme_configuration_table_matches_the_settings() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|v| v.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()))
        .collect();
    let settings = all_args(&Config::command());
    for env in &settings {
        assert!(table.contains(&env.as_str()), "README configuration table misses {env}");
    }
    for row in &table {
        assert!(settings.iter().any(|s| s == row), "README documents {row}, which the server does not read");
    }
}
