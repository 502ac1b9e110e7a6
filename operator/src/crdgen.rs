//! Prints the RealtimeCluster CustomResourceDefinition as YAML:
//! `cargo run -p switchyard-operator --bin crdgen > crds/realtimecluster.yaml`.

fn main() {
    print!("{}", switchyard_operator::crd::crd_yaml());
}
