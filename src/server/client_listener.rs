//! The client port's listener: accepts connections, runs TLS when it is
//! configured, and serves the HTTP API on each connection within limits a
//! hostile or broken client cannot stretch.
//!
//! Owns: the accept loop, the per-connection tasks, the connection cap,
//! the timeouts below, attaching a verified client certificate's
//! [`ClientIdentity`] to every request of its connection, and draining
//! connections at stop.
//!
//! Guarantees:
//! - at most [`ClientLimits::max_connections`] connections are open, and
//!   never more than the descriptors left after
//!   [`RESERVED_DESCRIPTORS`] for the node's own files and peers
//!   ([`connection_budget`]): at the cap the loop stops accepting (new
//!   connections wait in the kernel's backlog) rather than let clients
//!   take the descriptors a WAL segment cut or a snapshot save needs;
//! - an `accept` that fails for want of descriptors or memory
//!   (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) rests
//!   [`ACCEPT_BACKOFF`] before trying again, logging once per rest, and
//!   never spins; other accept errors (a connection reset while queued)
//!   are skipped;
//! - a TLS handshake must finish within
//!   [`ClientLimits::tls_handshake_timeout`]; with TLS configured,
//!   plaintext (or a certificate the trusted CA did not sign, or none
//!   when one is required) fails the handshake and the connection is
//!   closed before any HTTP is read;
//! - a request's header must arrive within
//!   [`ClientLimits::header_read_timeout`] of the connection becoming
//!   ready for it, so the same bound closes an idle keep-alive
//!   connection; a body that stalls for
//!   [`ClientLimits::body_read_timeout`] between bytes fails its request
//!   (400) and the connection;
//! - at stop, accepting ends, every connection finishes its request in
//!   flight and closes, and those still busy after [`DRAIN_TIMEOUT`] are
//!   cut.
//!
//! HTTP/1.1 and HTTP/2 (with TLS by ALPN `h2`, without by the client's
//! preface, as gRPC clients speak it) share the port; a request whose
//! content type is `application/grpc…` goes to the gRPC router (etcd's API,
//! `crate::etcd`), every other one to the HTTP router. HTTP/2 connections
//! are pinged every [`H2_KEEPALIVE_INTERVAL`] and closed when a ping goes
//! unanswered for [`H2_KEEPALIVE_TIMEOUT`], and read through
//! [`super::h2_authority`] (which repairs the `:authority` etcd's Go
//! clients may send).
//!
//! May not touch: what a request means (the routers') or who may do what
//! ([`crate::access`]; only the identity is attached here).

use crate::access::ClientIdentity;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::TimeoutBody;
use tower_service::Service;

/// Descriptors kept back from clients for the node itself: WAL segments
/// (the open one and the next, preallocated), snapshot and state files,
/// directories it syncs, io_uring and the runtime's own, and the peer
/// connections (whose listener has its own cap).
pub const RESERVED_DESCRIPTORS: u64 = 128;
/// The fewest client connections a budget allows, however few
/// descriptors there are.
const MIN_CONNECTIONS: usize = 16;
/// How long the accept loop rests when the process or system is out of
/// descriptors or memory.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);
/// How often an HTTP/2 connection is pinged.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// An HTTP/2 connection whose ping is not answered within this is closed.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stop waits for connections to finish their requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The client listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Connections open at once, at most (the descriptor budget may lower
    /// it; see [`connection_budget`]).
    pub max_connections: usize,
    /// How long a request's header may take to arrive, counted from when
    /// the connection is ready for it (so also how long a keep-alive
    /// connection may sit idle).
    pub header_read_timeout: Duration,
    /// How long a request body may go without a byte arriving.
    pub body_read_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> ClientLimits {
        ClientLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(15),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// TLS on the client port.
#[derive(Clone)]
pub struct ClientTlsSetup {
    /// The rustls configuration (certificate, and the client CA when
    /// client certificates are required).
    pub config: Arc<rustls::ServerConfig>,
    /// Client certificates are required, and their identity attached to
    /// requests.
    pub client_cert_auth: bool,
}

impl std::fmt::Debug for ClientTlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTlsSetup")
            .field("client_cert_auth", &self.client_cert_auth)
            .finish_non_exhaustive()
    }
}

/// The connections `limits` allow with the descriptor limit the process
/// has now (`RLIMIT_NOFILE`'s soft limit).
pub fn connection_budget(limits: &ClientLimits) -> usize {
    let descriptors = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _hard)| soft)
        .unwrap_or(1024);
    budget_for(limits.max_connections, descriptors)
}

fn budget_for(max_connections: usize, descriptors: u64) -> usize {
    let spare = descriptors.saturating_sub(RESERVED_DESCRIPTORS);
    let spare = usize::try_from(spare).unwrap_or(usize::MAX);
    max_connections.min(spare.max(MIN_CONNECTIONS))
}

/// What every connection task shares.
struct Shared {
    router: Router,
    /// etcd's gRPC API, when served.
    grpc: Option<Router>,
    tls: Option<(TlsAcceptor, bool)>,
    limits: ClientLimits,
}

/// Serves `router` (and gRPC requests on `grpc`) on `listener` until
/// `stop` turns true; the task ends once connections are drained.
pub fn spawn(
    listener: TcpListener,
    router: Router,
    grpc: Option<Router>,
    tls: Option<ClientTlsSetup>,
    limits: ClientLimits,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let budget = connection_budget(&limits);
    if budget < limits.max_connections {
        tracing::warn!(
            budget,
            max_connections = limits.max_connections,
            "few file descriptors: client connections capped lower (raise `ulimit -n`)"
        );
    }
    let shared = Arc::new(Shared {
        router,
        grpc,
        tls: tls.map(|setup| (TlsAcceptor::from(setup.config), setup.client_cert_auth)),
        limits,
    });
    tokio::spawn(accept_loop(listener, shared, budget, stop))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    budget: usize,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(budget));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = accept_within(&listener, &slots) => accepted,
        };
        let Some((stream, peer, slot)) = accepted else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        connections.spawn(async move {
            serve_connection(stream, peer, &shared, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            cut = connections.len(),
            "client connections still busy after the drain timeout; closing them"
        );
    }
}

/// Waits for a free slot, then for a connection. `None` after an accept
/// error (having rested if it was for want of resources).
async fn accept_within(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let slot = Arc::clone(slots).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, slot)),
        Err(error) if out_of_resources(&error) => {
            tracing::warn!(%error, rest = ?ACCEPT_BACKOFF, "cannot accept a client connection");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
        Err(error) => {
            tracing::debug!(%error, "a client connection failed while queued");
            None
        }
    }
}

/// Resolves once the server stops (or its stop signal is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn out_of_resources(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    stop: watch::Receiver<bool>,
) {
    // Answers are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let Some((acceptor, client_cert_auth)) = &shared.tls else {
        let sniffed = tokio::time::timeout(
            shared.limits.header_read_timeout,
            plaintext_protocol(&stream),
        );
        let Ok(Some(protocol)) = sniffed.await else {
            tracing::debug!(%peer, "no request within the header timeout");
            return;
        };
        return serve_http(stream, protocol, None, shared, stop).await;
    };
    let handshake =
        tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(stream));
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "client TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "client TLS handshake timed out");
            return;
        }
    };
    let identity = client_cert_auth
        .then(|| {
            let certificate = tls.get_ref().1.peer_certificates()?.first()?;
            let name = crate::tls::certificate_common_name(certificate).unwrap_or_default();
            Some(ClientIdentity(name))
        })
        .flatten();
    if *client_cert_auth && identity.is_none() {
        // rustls requires the certificate; this is belt and braces.
        tracing::warn!(%peer, "client certificate required but none seen");
        return;
    }
    let protocol = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    serve_http(tls, protocol, identity, shared, stop).await;
}

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells HTTP/2 with prior knowledge (gRPC without TLS) from HTTP/1.1 by
/// the first bytes, without consuming them; `None` if the client closes
/// first. An HTTP/1.1 method differs from the preface by its second byte
/// at the latest, so only a client sending a partial preface is waited
/// for (the caller bounds the wait by the header timeout).
async fn plaintext_protocol(stream: &TcpStream) -> Option<Protocol> {
    let mut first = [0u8; H2_PREFACE.len()];
    loop {
        let seen = stream.peek(&mut first).await.ok()?;
        if seen == 0 {
            return None;
        }
        if first[..seen] != H2_PREFACE[..seen] {
            return Some(Protocol::Http1);
        }
        if seen == H2_PREFACE.len() {
            return Some(Protocol::Http2);
        }
        // `peek` returns at once while the partial preface sits there.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve_http<IO>(
    io: IO,
    protocol: Protocol,
    identity: Option<ClientIdentity>,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone();
    let grpc = shared.grpc.clone();
    let body_read_timeout = shared.limits.body_read_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let is_grpc = grpc.is_some() && is_grpc_request(&request);
        let mut request = if is_grpc {
            // A gRPC stream (a watch, a keep-alive) may rightly stay quiet.
            request.map(Body::new)
        } else {
            request.map(|body| Body::new(TimeoutBody::new(body_read_timeout, body)))
        };
        if let Some(identity) = &identity {
            request.extensions_mut().insert(identity.clone());
        }
        let mut router = match (&grpc, is_grpc) {
            (Some(grpc), true) => grpc.clone(),
            _ => router.clone(),
        };
        async move { router.call(request).await }
    });
    let outcome = match protocol {
        Protocol::Http1 => {
            let io = TokioIo::new(io);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(shared.limits.header_read_timeout);
            drive(builder.serve_connection(io, service), &mut stop).await
        }
        Protocol::Http2 => {
            // etcd's Go clients may send an authority h2 refuses.
            let io = TokioIo::new(super::h2_authority::AuthorityRepair::new(io));
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
                .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
            drive(builder.serve_connection(io, service), &mut stop).await
        }
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, "client connection ended with an error");
    }
}

/// Runs `connection` to its end; at stop, lets it finish what is in
/// flight and close.
async fn drive<C>(connection: C, stop: &mut watch::Receiver<bool>) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(connection);
    tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = stopped(stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Whether a request is gRPC: HTTP/2 with an `application/grpc` content
/// type (plain, or `+proto` and the like).
fn is_grpc_request<B>(request: &hyper::Request<B>) -> bool {
    request.version() == hyper::Version::HTTP_2
        && request
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_leaves_descriptors_for_the_node() {
        assert_eq!(budget_for(10_000, 1_048_576), 10_000);
        assert_eq!(
            budget_for(10_000, 1024),
            1024 - RESERVED_DESCRIPTORS as usize
        );
        assert_eq!(budget_for(10_000, 256), 128);
        assert_eq!(budget_for(10_000, 100), MIN_CONNECTIONS);
        assert_eq!(budget_for(50, 1024), 50);
    }
}
