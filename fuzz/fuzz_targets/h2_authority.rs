//! A client's HTTP/2 byte stream through the `:authority` repair layer
//! (`server::h2_authority::AuthorityRepair`), which reads hostile input
//! before any server code does: no panic, no hang, and
//! - the output does not depend on how the input is split into reads
//!   (the same bytes at once and a few at a time give the same stream);
//! - repairing is idempotent: the output, read through a second repair
//!   layer, comes out unchanged (what the first one wrote needs no
//!   repair, or was handed on as received and is again).
//!
//! Input: byte 0 sets the read size (1 + its low 6 bits) and, with its
//! high bit, puts the HTTP/2 preface in front of the rest, so that most
//! runs get past the preface into frames and HPACK.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringraft::server::h2_authority::AuthorityRepair;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::runtime::Runtime;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client that sends `bytes`, `step` at a time, then closes; what the
/// server writes back is dropped.
struct Client {
    bytes: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let end = self
            .bytes
            .len()
            .min(self.at.saturating_add(self.step))
            .min(self.at + buf.remaining());
        buf.put_slice(&self.bytes[self.at..end]);
        self.at = end;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

/// What the server reads from `bytes` sent `step` at a time.
fn repaired(bytes: &[u8], step: usize) -> Vec<u8> {
    let client = Client {
        bytes: bytes.to_vec(),
        at: 0,
        step,
    };
    let mut server_side = AuthorityRepair::new(client);
    let mut out = Vec::new();
    runtime()
        .block_on(server_side.read_to_end(&mut out))
        .expect("an in-memory stream does not fail");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let step = 1 + usize::from(control & 0x3f);
    let mut input = Vec::with_capacity(PREFACE.len() + rest.len());
    if control & 0x80 != 0 {
        input.extend_from_slice(PREFACE);
    }
    input.extend_from_slice(rest);

    let whole = repaired(&input, usize::MAX);
    assert_eq!(
        repaired(&input, step),
        whole,
        "read {step} bytes at a time, the stream came out differently"
    );
    assert_eq!(
        repaired(&whole, usize::MAX),
        whole,
        "a repaired stream was changed by a second repair"
    );
});
