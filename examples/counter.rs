//! The README's "Embedding your own state machine": a replicated counter.
use ringraft::{Committed, Consistency, DecodeError, InProcessNetwork, Node, NodeConfig};
use ringraft::{StateMachine, WriteSnapshot};
use std::io::{Read, Write};

#[derive(Default)]
struct Counter(i64);
struct CounterView(i64);

impl WriteSnapshot for CounterView {
    fn write_snapshot(self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&self.0.to_le_bytes())
    }
}

impl StateMachine for Counter {
    type Command = i64; // add this much
    type Response = i64; // the total after it
    type Query = ();
    type QueryResult = i64;
    type Snapshot = CounterView;
    type Error = std::io::Error;

    fn encode_command(add: &i64, out: &mut Vec<u8>) {
        out.extend_from_slice(&add.to_le_bytes());
    }
    fn decode_command(bytes: &[u8]) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(
            bytes.try_into().map_err(DecodeError::new)?,
        ))
    }
    fn apply(&mut self, batch: Vec<Committed<i64>>) -> Result<Vec<i64>, std::io::Error> {
        Ok(batch
            .into_iter()
            .map(|c| {
                self.0 = self.0.wrapping_add(c.command);
                self.0
            })
            .collect())
    }
    fn query(&self, _: ()) -> i64 {
        self.0
    }
    fn snapshot(&self) -> CounterView {
        CounterView(self.0)
    }
    fn restore(&mut self, snapshot: &mut dyn Read) -> Result<(), std::io::Error> {
        let mut bytes = [0u8; 8];
        snapshot.read_exact(&mut bytes)?;
        self.0 = i64::from_le_bytes(bytes);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = NodeConfig::new(1, 0x77, dir.path().to_path_buf(), &[1]);
    let (transport, inbox) = InProcessNetwork::new().endpoint(1);
    let node = Node::start(config, Counter::default(), transport, inbox)?;
    while node.status().await?.leader.is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(node.propose(5).await?, 5);
    assert_eq!(node.propose(-2).await?, 3);
    assert_eq!(node.read((), Consistency::Linearizable).await?, 3);
    node.shutdown().await?;
    println!("counter: 3");
    Ok(())
}
