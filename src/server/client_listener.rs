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
//! May not touch: what a request means (the router's) or who may do what
//! ([`crate::access`]; only the identity is attached here).

use crate::access::ClientIdentity;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
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
    tls: Option<(TlsAcceptor, bool)>,
    limits: ClientLimits,
}

/// Serves `router` on `listener` until `stop` turns true; the task ends
/// once connections are drained.
pub fn spawn(
    listener: TcpListener,
    router: Router,
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
        return serve_http(stream, None, shared, stop).await;
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
    serve_http(tls, identity, shared, stop).await;
}

async fn serve_http<IO>(
    io: IO,
    identity: Option<ClientIdentity>,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone();
    let body_read_timeout = shared.limits.body_read_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(|body| Body::new(TimeoutBody::new(body_read_timeout, body)));
        if let Some(identity) = &identity {
            request.extensions_mut().insert(identity.clone());
        }
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, "client connection ended with an error");
    }
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
