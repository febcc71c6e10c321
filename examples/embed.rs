//! Embedding a node with the built-in key-value store in a tokio program
//! (the README's example): `cargo run --release --example embed`.

use ringraft::{Consistency, InProcessNetwork, KvStore, Node, NodeConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = std::env::temp_dir().join(format!("ringraft-embed-{}", std::process::id()));
    // Node 1 of cluster 0x77, a new cluster whose only voter is node 1.
    let config = NodeConfig::new(1, 0x77, data_dir.clone(), &[1]);
    // In one process nodes talk over channels; between processes use
    // ringraft::TcpTransport (see src/server/mod.rs).
    let network = InProcessNetwork::new();
    let (transport, inbox) = network.endpoint(1);
    let node = Node::start(config, KvStore::new(), transport, inbox)?;
    while node.status().await?.leader.is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let index = node.put(b"key", b"value").await?; // durable and applied here
    let value = node.get(b"key", Consistency::Linearizable).await?;
    assert_eq!(value.as_deref(), Some(&b"value"[..]));
    println!("written at index {index}");
    node.shutdown().await?; // drains, syncs, stops the actors
    std::fs::remove_dir_all(&data_dir)?;
    Ok(())
}
