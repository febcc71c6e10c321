//! One keep-alive HTTP/1.1 connection of a bench client (hyper).
//!
//! Owns: [`Connection`]: connecting (TCP_NODELAY), sending one request at
//! a time, reading the whole answer, and reconnecting after any failure;
//! [`get_text`] for one-off requests (`/metrics`, status).
//! Guarantees: a request that failed or was cancelled midway (its future
//! dropped, as on a timeout) leaves no half-used connection behind: the
//! next request opens a new one. Errors are strings that name the
//! endpoint; nothing panics on a bad answer.
//! May not touch: what the requests mean (the drivers).

use super::options::Endpoint;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longest a one-off request ([`get_text`]) may take.
const ONE_OFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A keep-alive connection to one endpoint.
#[derive(Debug)]
pub struct Connection {
    endpoint: Endpoint,
    authority: String,
    /// `None` when a new connection is needed (at first, after a failure,
    /// or after a request was abandoned midway).
    sender: Option<SendRequest<Full<Bytes>>>,
}

async fn open(endpoint: &Endpoint) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("{endpoint}: cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{endpoint}: HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the peer closes.
        let _ = connection.await;
    });
    Ok(sender)
}

impl Connection {
    /// Connects to `endpoint`.
    pub async fn connect(endpoint: &Endpoint) -> Result<Connection, String> {
        let sender = open(endpoint).await?;
        Ok(Connection {
            authority: endpoint.authority(),
            endpoint: endpoint.clone(),
            sender: Some(sender),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        // Taken out for the request: if this future is dropped midway, the
        // connection (mid-request) is dropped with it.
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => open(&self.endpoint).await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("{}: connection: {e}", self.endpoint))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, &self.authority);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| format!("{}: bad request {path_and_query:?}: {e}", self.endpoint))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{}: {e}", self.endpoint))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{}: reading the answer: {e}", self.endpoint))?
            .to_bytes();
        self.sender = Some(sender);
        Ok((status, bytes))
    }
}

/// `GET path` on a fresh connection; the body as text when the status is
/// 200.
pub async fn get_text(endpoint: &Endpoint, path: &str) -> Result<String, String> {
    let work = async {
        let mut connection = Connection::connect(endpoint).await?;
        let (status, body) = connection
            .request(Method::GET, path, None, Bytes::new())
            .await?;
        if status != StatusCode::OK {
            return Err(format!("{endpoint}: GET {path}: status {status}"));
        }
        String::from_utf8(body.to_vec()).map_err(|_| format!("{endpoint}: GET {path}: not UTF-8"))
    };
    tokio::time::timeout(ONE_OFF_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{endpoint}: GET {path}: no answer within {ONE_OFF_TIMEOUT:?}"
            ))
        })
}

/// `POST path` with a JSON body on a fresh connection; the answer when the
/// status is 200.
pub async fn post_json(endpoint: &Endpoint, path: &str, json: String) -> Result<Bytes, String> {
    let work = async {
        let mut connection = Connection::connect(endpoint).await?;
        let (status, body) = connection
            .request(
                Method::POST,
                path,
                Some("application/json"),
                Bytes::from(json),
            )
            .await?;
        if status != StatusCode::OK {
            return Err(format!(
                "{endpoint}: POST {path}: status {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(body)
    };
    tokio::time::timeout(ONE_OFF_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{endpoint}: POST {path}: no answer within {ONE_OFF_TIMEOUT:?}"
            ))
        })
}
