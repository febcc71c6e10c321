//! Repairs the `:authority` of HTTP/2 requests from etcd's Go clients
//! before the h2 server sees them.
//!
//! etcd's clients send an `:authority` that is not an authority (RFC 3986
//! §3.2) in some versions: etcdctl 3.4 sends `http://host:port` on its
//! per-endpoint connections (`--cluster`, `endpoint status`, `endpoint
//! hashkv`), clientv3 3.5.0 sends `#initially=[…]` (etcd-io/etcd#13192).
//! etcd's own gRPC server ignores the field; the h2 crate refuses such a
//! request as malformed (a stream reset the client reports as an
//! "unknown" error). So this wrapper sits between the client's byte stream
//! and the h2 server:
//!
//! - it reads the connection preface and the frames up to the end of the
//!   first request's header block, and decodes that block (HPACK, with the
//!   client's dynamic table);
//! - when that `:authority` is absent or valid — every well-behaved
//!   client — it hands the frames on unchanged and from then on is a plain
//!   pass-through: the h2 server decodes the same bytes the client sent;
//! - when it is invalid, every request header block of the connection is
//!   decoded and written again for the server (literal fields, never
//!   indexed, so the server's table stays empty and nothing the client
//!   indexed needs mirroring), with the authority repaired to `host:port`
//!   (the scheme and any path dropped), or removed when nothing valid is
//!   left.
//!
//! Owns: the client-to-server byte stream of one HTTP/2 connection.
//! Guarantees: frames other than HEADERS/CONTINUATION pass in order and
//! unchanged; memory per connection is bounded ([`MAX_FRAME_BYTES`],
//! [`MAX_BLOCK_BYTES`]); anything it cannot parse (an oversized frame, an
//! HPACK error, interleaved frames inside a header block) is handed on as
//! received, with the rest of the connection, for the h2 server to judge —
//! this layer never decides a protocol error itself. The server-to-client
//! direction is untouched.
//! May not touch: what the requests mean, TLS (it wraps the decrypted
//! stream).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const PREFACE_BYTES: usize = 24;
/// Frame header length.
const FRAME_HEADER_BYTES: usize = 9;
/// The largest frame parsed; larger ones pass through (the h2 server's
/// default `SETTINGS_MAX_FRAME_SIZE`, which clients must respect).
pub const MAX_FRAME_BYTES: usize = 16_384;
/// The largest header block decoded; a larger one passes through.
pub const MAX_BLOCK_BYTES: usize = 256 * 1024;

const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the 24-byte preface was read.
    Preface,
    /// Reading frames up to the first request's header block.
    FirstRequest,
    /// The first authority was invalid: re-encoding every header block.
    Rewriting,
    /// Handing everything on as it comes.
    PassThrough,
}

/// A header block not yet ended (HEADERS, then CONTINUATIONs).
struct OpenBlock {
    stream_id: u32,
    /// END_STREAM of the HEADERS frame.
    end_stream: bool,
    /// The HEADERS frame's priority fields, if it had them.
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as received, to hand on unchanged.
    raw: Vec<u8>,
}

/// An HTTP/2 server-side stream whose request authorities are repaired.
pub struct AuthorityRepair<IO> {
    inner: IO,
    mode: Mode,
    /// Bytes read and not yet parsed.
    pending: Vec<u8>,
    /// Bytes ready for the reader, from `ready_at` on.
    ready: Vec<u8>,
    ready_at: usize,
    block: Option<OpenBlock>,
    /// The client's HPACK context (dropped once passing through).
    decoder: Option<loona_hpack::Decoder<'static>>,
}

impl<IO> AuthorityRepair<IO> {
    /// Wraps the server side of an HTTP/2 connection, before its preface.
    pub fn new(inner: IO) -> AuthorityRepair<IO> {
        AuthorityRepair {
            inner,
            mode: Mode::Preface,
            pending: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            block: None,
            decoder: Some(loona_hpack::Decoder::new()),
        }
    }

    /// Parses what `pending` holds, moving bytes to `ready`.
    fn process(&mut self) {
        loop {
            match self.mode {
                Mode::PassThrough => {
                    self.ready.append(&mut self.pending);
                    return;
                }
                Mode::Preface => {
                    if self.pending.len() < PREFACE_BYTES {
                        return;
                    }
                    self.ready.extend(self.pending.drain(..PREFACE_BYTES));
                    self.mode = Mode::FirstRequest;
                }
                Mode::FirstRequest | Mode::Rewriting => {
                    if !self.next_frame() {
                        return;
                    }
                }
            }
        }
    }

    /// Handles one whole frame from `pending`; false when there is none
    /// yet (or the stream went to pass-through).
    fn next_frame(&mut self) -> bool {
        if self.pending.len() < FRAME_HEADER_BYTES {
            return false;
        }
        let header = &self.pending[..FRAME_HEADER_BYTES];
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if length > MAX_FRAME_BYTES {
            self.give_up();
            return false;
        }
        if self.pending.len() < FRAME_HEADER_BYTES + length {
            return false;
        }
        let frame: Vec<u8> = self.pending.drain(..FRAME_HEADER_BYTES + length).collect();
        let payload = &frame[FRAME_HEADER_BYTES..];
        match (kind, self.block.as_mut()) {
            (FRAME_HEADERS, None) => {
                let Some((priority, fragment)) = headers_payload(flags, payload) else {
                    return self.give_up_with(frame);
                };
                self.block = Some(OpenBlock {
                    stream_id,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                    raw: frame.clone(),
                });
            }
            (FRAME_CONTINUATION, Some(block)) if block.stream_id == stream_id => {
                if block.raw.len() + frame.len() > MAX_BLOCK_BYTES {
                    return self.give_up_with(frame);
                }
                block.fragment.extend_from_slice(payload);
                block.raw.extend_from_slice(&frame);
            }
            (_, Some(_)) | (FRAME_CONTINUATION, None) => return self.give_up_with(frame),
            (_, None) => {
                self.ready.extend_from_slice(&frame);
                return true;
            }
        }
        if flags & FLAG_END_HEADERS != 0 {
            self.finish_block();
        }
        self.mode != Mode::PassThrough
    }

    /// A header block ended: hand it on as received, or repaired.
    fn finish_block(&mut self) {
        let Some(block) = self.block.take() else {
            return;
        };
        let Some(decoder) = self.decoder.as_mut() else {
            return self.pass_through_after(block.raw);
        };
        let Ok(fields) = decoder.decode(&block.fragment) else {
            return self.pass_through_after(block.raw);
        };
        if self.mode == Mode::FirstRequest {
            if !fields
                .iter()
                .any(|(name, value)| is_bad_authority(name, value))
            {
                return self.pass_through_after(block.raw);
            }
            self.mode = Mode::Rewriting;
        }
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        for (name, value) in &fields {
            if name.as_slice() != b":authority" {
                encode_literal(&mut encoded, name, value);
            } else if let Some(repaired) = repaired_authority(value) {
                encode_literal(&mut encoded, name, repaired);
            }
        }
        write_header_frames(&mut self.ready, &block, &encoded);
    }

    fn pass_through_after(&mut self, raw: Vec<u8>) {
        self.ready.extend_from_slice(&raw);
        self.mode = Mode::PassThrough;
        self.decoder = None;
        self.ready.append(&mut self.pending);
    }

    /// Hands on the open block, `frame` and the rest as received.
    fn give_up_with(&mut self, frame: Vec<u8>) -> bool {
        if let Some(block) = self.block.take() {
            self.ready.extend_from_slice(&block.raw);
        }
        self.pass_through_after(frame);
        false
    }

    fn give_up(&mut self) {
        self.give_up_with(Vec::new());
    }
}

/// A HEADERS payload's priority fields and block fragment, without
/// padding; `None` when the lengths do not add up.
fn headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0;
    if flags & FLAG_PADDED != 0 {
        let (&length, after) = rest.split_first()?;
        padding = usize::from(length);
        rest = after;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let fields: [u8; 5] = rest.get(..5)?.try_into().ok()?;
        priority = Some(fields);
        rest = &rest[5..];
    }
    let fragment_length = rest.len().checked_sub(padding)?;
    Some((priority, &rest[..fragment_length]))
}

fn is_bad_authority(name: &[u8], value: &[u8]) -> bool {
    name == b":authority" && !is_authority(value)
}

fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// `scheme://host:port/…` → `host:port`, if that is an authority.
fn repaired_authority(value: &[u8]) -> Option<&[u8]> {
    if is_authority(value) {
        return Some(value);
    }
    let after_scheme = value
        .windows(3)
        .position(|window| window == b"://")
        .map_or(value, |at| &value[at + 3..]);
    let end = after_scheme
        .iter()
        .position(|&byte| byte == b'/')
        .unwrap_or(after_scheme.len());
    let candidate = &after_scheme[..end];
    (!candidate.is_empty() && is_authority(candidate)).then_some(candidate)
}

/// A literal header field without indexing, new name, no Huffman coding
/// (RFC 7541 §6.2.2).
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    for string in [name, value] {
        encode_integer(out, string.len(), 7, 0x00);
        out.extend_from_slice(string);
    }
}

/// An HPACK integer with an `prefix_bits`-bit prefix (RFC 7541 §5.1).
fn encode_integer(out: &mut Vec<u8>, value: usize, prefix_bits: u32, first_byte_flags: u8) {
    let limit = (1usize << prefix_bits) - 1;
    if value < limit {
        out.push(first_byte_flags | value as u8);
        return;
    }
    out.push(first_byte_flags | limit as u8);
    let mut rest = value - limit;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// `block`'s request headers as a HEADERS frame and CONTINUATIONs of at
/// most [`MAX_FRAME_BYTES`] each.
fn write_header_frames(out: &mut Vec<u8>, block: &OpenBlock, encoded: &[u8]) {
    let priority_bytes = if block.priority.is_some() { 5 } else { 0 };
    let first_room = MAX_FRAME_BYTES - priority_bytes;
    let first_length = encoded.len().min(first_room);
    let (first, mut rest) = encoded.split_at(first_length);
    let mut flags = if block.end_stream { FLAG_END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame_header(
        out,
        priority_bytes + first.len(),
        FRAME_HEADERS,
        flags,
        block.stream_id,
    );
    if let Some(priority) = block.priority {
        out.extend_from_slice(&priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let length = rest.len().min(MAX_FRAME_BYTES);
        let (chunk, after) = rest.split_at(length);
        let flags = if after.is_empty() {
            FLAG_END_HEADERS
        } else {
            0
        };
        write_frame_header(out, chunk.len(), FRAME_CONTINUATION, flags, block.stream_id);
        out.extend_from_slice(chunk);
        rest = after;
    }
}

fn write_frame_header(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream_id: u32) {
    let length = length as u32;
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityRepair<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_at < this.ready.len() {
                let available = &this.ready[this.ready_at..];
                let length = available.len().min(buf.remaining());
                buf.put_slice(&available[..length]);
                this.ready_at += length;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::PassThrough {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client closed: the rest as it was, then the end.
                this.give_up();
                if this.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.pending.extend_from_slice(read.filled());
            this.process();
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame_header(&mut out, payload.len(), kind, flags, stream_id);
        out.extend_from_slice(payload);
        out
    }

    /// A header list: (name, value) pairs in order.
    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn request(authority: &str, path: &str) -> Fields {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
    }

    /// A client connection: preface, SETTINGS, then per request a
    /// header block (HPACK with indexing, as clients encode) and a DATA
    /// frame.
    fn client_bytes(requests: &[Fields]) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        for (at, fields) in requests.iter().enumerate() {
            let stream_id = 1 + 2 * at as u32;
            let block = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
            // In frames of at most the default size, as a client must.
            let open = OpenBlock {
                stream_id,
                end_stream: false,
                priority: None,
                fragment: Vec::new(),
                raw: Vec::new(),
            };
            write_header_frames(&mut out, &open, &block);
            out.extend(frame(0x0, FLAG_END_STREAM, stream_id, b"\0\0\0\0\x02hi"));
        }
        out
    }

    /// A reader handing out `bytes` `step` at a time.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let end = (this.at + this.step).min(this.bytes.len());
            let length = (end - this.at).min(buf.remaining());
            buf.put_slice(&this.bytes[this.at..this.at + length]);
            this.at += length;
            Poll::Ready(Ok(()))
        }
    }

    async fn through_repair(bytes: Vec<u8>, step: usize) -> Vec<u8> {
        let mut repaired = AuthorityRepair::new(Trickle { bytes, at: 0, step });
        let mut out = Vec::new();
        repaired.read_to_end(&mut out).await.expect("reads");
        out
    }

    /// The frames after the preface: (kind, flags, stream, payload).
    fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert_eq!(&bytes[..PREFACE.len()], PREFACE);
        let mut rest = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let length =
                usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let stream_id = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            out.push((rest[3], rest[4], stream_id, rest[9..9 + length].to_vec()));
            rest = &rest[9 + length..];
        }
        out
    }

    /// The header lists the server would decode, by stream.
    fn decoded_requests(bytes: &[u8]) -> Vec<(u32, Fields)> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut out = Vec::new();
        let mut block = Vec::new();
        for (kind, flags, stream_id, payload) in frames(bytes) {
            match kind {
                FRAME_HEADERS => {
                    let (_, fragment) = headers_payload(flags, &payload).expect("payload");
                    block = fragment.to_vec();
                }
                FRAME_CONTINUATION => block.extend_from_slice(&payload),
                _ => continue,
            }
            if flags & FLAG_END_HEADERS != 0 {
                out.push((
                    stream_id,
                    decoder.decode(&block).expect("the server decodes"),
                ));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_valid_authority_leaves_the_connection_byte_for_byte() {
        let requests = [
            request("127.0.0.1:2379", "/etcdserverpb.KV/Range"),
            request("127.0.0.1:2379", "/etcdserverpb.KV/Put"),
        ];
        let sent = client_bytes(&requests);
        for step in [1, 7, 8192] {
            assert_eq!(
                through_repair(sent.clone(), step).await,
                sent,
                "step {step}"
            );
        }
    }

    #[tokio::test]
    async fn a_scheme_in_the_authority_is_cut_in_every_request_of_the_connection() {
        let requests = [
            request("http://127.0.0.1:2379", "/etcdserverpb.KV/Range"),
            request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"),
            request("127.0.0.1:2379", "/etcdserverpb.KV/Put"),
        ];
        let sent = client_bytes(&requests);
        for step in [1, 5, 8192] {
            let received = through_repair(sent.clone(), step).await;
            let decoded = decoded_requests(&received);
            assert_eq!(decoded.len(), 3, "step {step}");
            for ((stream_id, fields), (at, asked)) in
                decoded.iter().zip(requests.iter().enumerate())
            {
                assert_eq!(*stream_id, 1 + 2 * at as u32);
                let mut expected = asked.clone();
                expected[3].1 = b"127.0.0.1:2379".to_vec();
                assert_eq!(fields, &expected, "step {step}");
            }
            let data: Vec<_> = frames(&received)
                .into_iter()
                .filter(|f| f.0 == 0x0)
                .collect();
            assert_eq!(data.len(), 3, "DATA frames pass unchanged");
            assert!(
                data.iter()
                    .all(|f| f.3 == b"\0\0\0\0\x02hi" && f.1 == FLAG_END_STREAM)
            );
        }
    }

    #[tokio::test]
    async fn an_authority_beyond_repair_is_dropped_and_large_blocks_are_split() {
        let mut fields = request(
            "#initially=[http://a:1;http://b:2]",
            "/etcdserverpb.KV/Range",
        );
        fields.push((b"x-large".to_vec(), vec![b'v'; 40_000]));
        let sent = client_bytes(std::slice::from_ref(&fields));
        let received = through_repair(sent, 4096).await;
        let kinds: Vec<u8> = frames(&received).iter().map(|f| f.0).collect();
        assert_eq!(
            kinds,
            [
                0x4,
                FRAME_HEADERS,
                FRAME_CONTINUATION,
                FRAME_CONTINUATION,
                0x0
            ],
            "SETTINGS, the block in three frames, DATA"
        );
        assert!(
            frames(&received)
                .iter()
                .all(|f| f.3.len() <= MAX_FRAME_BYTES)
        );
        let decoded = decoded_requests(&received);
        let mut expected = fields.clone();
        expected.remove(3);
        assert_eq!(decoded, vec![(1, expected)]);
    }

    #[tokio::test]
    async fn padding_and_priority_are_understood() {
        let mut encoder = loona_hpack::Encoder::new();
        let fields = request("http://h:1", "/p");
        let block = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0, 0]);
        let flags = FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM;
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(FRAME_HEADERS, flags, 1, &payload));
        let received = through_repair(sent, 8192).await;
        let frames = frames(&received);
        assert_eq!(frames.len(), 1);
        let (_, flags, _, payload) = &frames[0];
        assert_eq!(*flags, FLAG_END_HEADERS | FLAG_PRIORITY | FLAG_END_STREAM);
        assert_eq!(&payload[..5], &[0, 0, 0, 0, 16]);
        let decoded = decoded_requests(&received);
        assert_eq!(decoded[0].1[3], (b":authority".to_vec(), b"h:1".to_vec()));
    }

    #[tokio::test]
    async fn random_header_blocks_never_panic_and_keep_their_bytes_when_undecodable() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let length = (random() % 64) as usize;
            let block: Vec<u8> = (0..length).map(|_| random() as u8).collect();
            let mut sent = PREFACE.to_vec();
            sent.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &block));
            let received = through_repair(sent.clone(), 8192).await;
            let decodes = loona_hpack::Decoder::new().decode(&block);
            let bad_authority = decodes.as_ref().is_ok_and(|fields| {
                fields
                    .iter()
                    .any(|(name, value)| is_bad_authority(name, value))
            });
            if !bad_authority {
                assert_eq!(received, sent, "block {block:?}");
            }
        }
    }

    #[tokio::test]
    async fn what_it_cannot_parse_is_handed_on_as_received() {
        let mut sent = PREFACE.to_vec();
        // A CONTINUATION without HEADERS, then anything.
        sent.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, b"junk"));
        sent.extend_from_slice(b"more junk");
        assert_eq!(through_repair(sent.clone(), 3).await, sent);
        // An oversized frame.
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(FRAME_HEADERS, 0, 1, &vec![0; MAX_FRAME_BYTES + 1]));
        assert_eq!(through_repair(sent.clone(), 8192).await, sent);
        // A header block that is not HPACK.
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff],
        ));
        sent.extend(frame(0x0, 0, 1, b"x"));
        assert_eq!(through_repair(sent.clone(), 8192).await, sent);
        // A connection cut short.
        let mut sent = client_bytes(&[request("http://h:1", "/p")]);
        sent.truncate(PREFACE.len() + 9 + 9 + 4);
        assert_eq!(through_repair(sent.clone(), 8192).await, sent);
    }
}
