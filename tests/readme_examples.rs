//! The README's embedding examples are the example files that the build
//! compiles (and `cargo run --example` runs), not copies that drift.

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn the_state_machine_example_in_the_readme_is_examples_counter_rs() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/counter.rs"))
            .expect("examples/counter.rs");
    let block = format!("```rust\n{example}```");
    assert!(
        readme().contains(&block),
        "README's \"Embedding your own state machine\" block differs from examples/counter.rs"
    );
}

#[test]
fn the_key_value_example_in_the_readme_matches_examples_embed_rs() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/embed.rs"))
            .expect("examples/embed.rs");
    let readme = readme();
    // The README's copy differs only in the data directory and cleanup.
    for line in example.lines().filter(|line| {
        line.contains("Node::start") || line.contains("node.put") || line.contains("^use ")
    }) {
        assert!(readme.contains(line.trim()), "README lacks {line:?}");
    }
    assert!(
        readme
            .contains("use ringraft::{Consistency, InProcessNetwork, KvStore, Node, NodeConfig};")
    );
}
