//! The process's file descriptor limit.
//!
//! Owns: raising `RLIMIT_NOFILE`'s soft limit to its hard limit at start
//! (`ringraft serve` does; an embedder decides for its own process).
//! Why: the soft limit is often 1024, and a server that runs out of
//! descriptors fails connections first but, at a WAL segment cut or a
//! snapshot save, its storage; the client listener sizes its connection
//! cap from the limit it finds, so raising it first gives clients room
//! and keeps a reserve for files. May not touch: anything else.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft descriptor limit to the hard one; returns the limit in
/// force afterwards.
pub fn raise_descriptor_limit() -> Result<u64, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(soft.max(hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_descriptor_limit().expect("raised");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("read");
        assert_eq!(soft, hard);
        assert_eq!(limit, hard);
    }
}
