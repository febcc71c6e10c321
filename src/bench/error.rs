//! What can stop a bench run.
//!
//! Owns: [`BenchError`].
//! Guarantees: every failure the tool reports is a typed variant with the
//! context a user needs (which flag, which endpoint, which path).
//! May not touch: anything but error values.

use std::path::PathBuf;

/// Why a bench could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command-line option is wrong or options contradict each other.
    #[error("{flag}: {reason}")]
    Option {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A `--target` URL does not parse.
    #[error("--target {target:?}: {reason}")]
    Target {
        /// The URL as given.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The tokio runtime could not start.
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    /// An embedded node failed to start or stopped with an error.
    #[error("embedded node {node}: {source}")]
    Node {
        /// The node id.
        node: u64,
        /// The node's error.
        source: crate::node::NodeError,
    },
    /// No leader was elected in time.
    #[error("no leader within {0:?}")]
    NoLeader(std::time::Duration),
    /// A server could not be reached or answered badly before the run
    /// started (the run itself counts failed operations instead).
    #[error("{endpoint}: {reason}")]
    Endpoint {
        /// The endpoint (`host:port`).
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// Every client failed before any operation was acknowledged.
    #[error("no operation succeeded ({errors} failed; last error: {last})")]
    NothingSucceeded {
        /// Operations that failed.
        errors: u64,
        /// The last failure.
        last: String,
    },
    /// A latency histogram could not be created (a bug).
    #[error("histogram: {0}")]
    Histogram(String),
    /// The metrics recorder could not be installed.
    #[error("metrics recorder: {0}")]
    Metrics(String),
    /// A client task panicked or was cancelled (a bug).
    #[error("client task: {0}")]
    Task(String),
}

impl BenchError {
    /// An option error for `flag`.
    pub(crate) fn option(flag: &'static str, reason: impl Into<String>) -> BenchError {
        BenchError::Option {
            flag,
            reason: reason.into(),
        }
    }

    /// An IO error on `path`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> BenchError {
        let path = path.into();
        move |source| BenchError::Io { what, path, source }
    }
}
