//! How acknowledgements travel back: the highest durable Ready number, or
//! the failure that stopped the actor, on a `tokio::sync::watch` channel the
//! raft actor (a tokio task) awaits.
//!
//! Owns: [`Persisted`], [`PersistProgress`] and the awaiting side,
//! [`PersistedWatch`].
//! Guarantees: the published number only grows, and every Ready up to it is
//! durable (or needed no sync); once a failure is published it stays, and
//! the number never moves again.
//! May not touch: IO, the request queue.

use super::error::{PersistError, SharedPersistError};
use std::sync::Arc;
use tokio::sync::watch;

/// Acknowledgement: every Ready numbered up to `number` is persisted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Persisted {
    /// The highest Ready number covered.
    pub number: u64,
}

/// What the actor publishes.
#[derive(Clone, Debug, Default)]
pub struct PersistProgress {
    /// The latest acknowledgement.
    pub persisted: Persisted,
    /// The failure that stopped the actor, if one did.
    pub failure: Option<SharedPersistError>,
}

/// The awaiting side of the acknowledgements; cheap to clone.
#[derive(Clone, Debug)]
pub struct PersistedWatch {
    receiver: watch::Receiver<PersistProgress>,
}

impl PersistedWatch {
    pub(crate) fn new(receiver: watch::Receiver<PersistProgress>) -> PersistedWatch {
        PersistedWatch { receiver }
    }

    /// The latest acknowledgement, or the failure.
    pub fn latest(&self) -> Result<Persisted, SharedPersistError> {
        let progress = self.receiver.borrow();
        match &progress.failure {
            Some(failure) => Err(Arc::clone(failure)),
            None => Ok(progress.persisted),
        }
    }

    /// Waits for an acknowledgement newer than the last one this watch
    /// returned, and returns it; fails when the actor failed or stopped.
    pub async fn changed(&mut self) -> Result<Persisted, SharedPersistError> {
        if self.receiver.changed().await.is_err() {
            return Err(self.stopped_error());
        }
        let progress = self.receiver.borrow_and_update();
        match &progress.failure {
            Some(failure) => Err(Arc::clone(failure)),
            None => Ok(progress.persisted),
        }
    }

    /// Waits until Ready `number` is acknowledged.
    pub async fn wait_for(&mut self, number: u64) -> Result<Persisted, SharedPersistError> {
        let outcome = self
            .receiver
            .wait_for(|p| p.failure.is_some() || p.persisted.number >= number)
            .await
            .map(|p| p.clone());
        match outcome {
            Ok(progress) => match progress.failure {
                Some(failure) => Err(failure),
                None => Ok(progress.persisted),
            },
            Err(_) => Err(self.stopped_error()),
        }
    }

    /// The failure if the actor failed, [`PersistError::Stopped`] otherwise.
    pub(crate) fn stopped_error(&self) -> SharedPersistError {
        self.receiver
            .borrow()
            .failure
            .clone()
            .unwrap_or_else(|| Arc::new(PersistError::Stopped))
    }
}
