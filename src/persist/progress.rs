//! How acknowledgements travel back: the highest durable Ready number, or
//! the failure that stopped the actor, on a `tokio::sync::watch` channel,
//! and a doorbell rung after each change, which the raft actor (a tokio
//! task) awaits.
//!
//! Owns: [`Persisted`], [`PersistProgress`], the publishing side
//! ([`ProgressSender`]) and the awaiting sides, [`PersistedWatch`] and
//! [`PersistedDoorbell`].
//! Guarantees: the published number only grows, and every Ready up to it is
//! durable (or needed no sync); once a failure is published it stays, and
//! the number never moves again; the doorbell rings after the watch holds
//! the change, so whoever hears it and then reads the watch sees it.
//! May not touch: IO other than the doorbell's socket, the request queue.
//!
//! Why a doorbell: the persistence thread is not a tokio worker. A task
//! woken from it through the watch goes on the runtime's shared queue and
//! a parked worker is unparked to look for it (and tokio unparks one more
//! when the last searching worker finds work). The doorbell is a Unix
//! socket registered with the runtime's IO driver instead: the worker
//! parked in the driver wakes on it and runs the task from its own queue.
//! Measured on a 2-vCPU VM (BENCHMARKS.md, issue 18, goal 3): one client's
//! write p50 0.250 → 0.211 ms; the workers still sleep about twice per
//! write, but are preempted 0.01 times per write instead of 0.2–0.3, so
//! the gain is in how the wake reaches a worker, not in how many wake.

use super::error::{PersistError, SharedPersistError};
use std::io::Write;
use std::os::unix::net::UnixStream;
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

/// The actor's side: publishes into the watch, then rings the doorbell.
#[derive(Debug)]
pub(crate) struct ProgressSender {
    // Declared first so that it drops first: a waiter woken by the
    // doorbell's end of stream then finds the watch closed.
    watch: watch::Sender<PersistProgress>,
    /// Non-blocking; when full, a ring is pending and that is enough.
    doorbell: UnixStream,
}

impl ProgressSender {
    /// Publishes `number` if it is newer than the last acknowledgement.
    pub(crate) fn persisted(&self, number: u64) {
        let changed = self.watch.send_if_modified(|progress| {
            let newer = number > progress.persisted.number;
            if newer {
                progress.persisted.number = number;
            }
            newer
        });
        if changed {
            self.ring();
        }
    }

    /// Publishes the failure that stops the actor.
    pub(crate) fn failed(&self, failure: &SharedPersistError) {
        self.watch.send_modify(|progress| {
            progress.failure = Some(Arc::clone(failure));
        });
        self.ring();
    }

    fn ring(&self) {
        // A full socket (WouldBlock) holds an unheard ring already; a
        // closed one has no listener left.
        let _ = (&self.doorbell).write(&[1]);
    }
}

/// A new progress channel: the actor's side, the watch, and the doorbell's
/// listening end (for [`PersistedDoorbell::new`]).
pub(crate) fn progress_channel() -> std::io::Result<(ProgressSender, PersistedWatch, UnixStream)> {
    let (watch_sender, receiver) = watch::channel(PersistProgress::default());
    let (ringing, listening) = UnixStream::pair()?;
    ringing.set_nonblocking(true)?;
    listening.set_nonblocking(true)?;
    let sender = ProgressSender {
        watch: watch_sender,
        doorbell: ringing,
    };
    Ok((sender, PersistedWatch::new(receiver), listening))
}

/// The acknowledgements awaited through the doorbell (see the module doc
/// for why); for the one task that drives the node.
#[derive(Debug)]
pub struct PersistedDoorbell {
    watch: PersistedWatch,
    /// `None` when the runtime has no IO driver to listen with: then the
    /// watch wakes the task.
    doorbell: Option<tokio::net::UnixStream>,
}

impl PersistedDoorbell {
    /// Listens on `doorbell` (the end [`progress_channel`] gave) for
    /// changes of `watch`, or on the watch alone when there is no doorbell
    /// or the reactor refuses it. Call it on a tokio runtime with IO
    /// enabled: tokio panics otherwise (`Node::start` documents it).
    pub(crate) fn new(watch: PersistedWatch, doorbell: Option<UnixStream>) -> PersistedDoorbell {
        let doorbell = doorbell.and_then(|doorbell| {
            match tokio::net::UnixStream::from_std(doorbell) {
                Ok(doorbell) => Some(doorbell),
                Err(error) => {
                    tracing::info!(%error, "persistence acknowledgements wake through the watch");
                    None
                }
            }
        });
        PersistedDoorbell { watch, doorbell }
    }

    /// As [`PersistedWatch::changed`].
    pub async fn changed(&mut self) -> Result<Persisted, SharedPersistError> {
        let Some(doorbell) = &self.doorbell else {
            return self.watch.changed().await;
        };
        loop {
            if let Some(outcome) = self.watch.take_change() {
                return outcome;
            }
            // An error other than "nothing to read" is treated as a ring:
            // the watch says what happened.
            let _ = doorbell.readable().await;
            let mut rings = [0u8; 64];
            loop {
                match doorbell.try_read(&mut rings) {
                    Ok(n) if n == rings.len() => continue,
                    _ => break,
                }
            }
        }
    }
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

    /// The acknowledgement newer than the last one this watch returned, if
    /// there is one, without waiting; the failure once the actor failed or
    /// stopped.
    pub(crate) fn take_change(&mut self) -> Option<Result<Persisted, SharedPersistError>> {
        match self.receiver.has_changed() {
            Ok(false) => None,
            Ok(true) => {
                let progress = self.receiver.borrow_and_update();
                Some(match &progress.failure {
                    Some(failure) => Err(Arc::clone(failure)),
                    None => Ok(progress.persisted),
                })
            }
            Err(_) => Some(Err(self.stopped_error())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Waits for `number` through `doorbell`, checking each answer grows.
    async fn wait_until(doorbell: &mut PersistedDoorbell, number: u64) -> Vec<u64> {
        let mut seen = Vec::new();
        while seen.last() != Some(&number) {
            let persisted = tokio::time::timeout(Duration::from_secs(10), doorbell.changed())
                .await
                .expect("an acknowledgement within 10 s")
                .expect("no failure");
            assert!(
                seen.last() < Some(&persisted.number),
                "{seen:?} then {persisted:?}"
            );
            seen.push(persisted.number);
        }
        seen
    }

    #[test]
    fn every_acknowledgement_from_another_thread_is_heard_through_the_doorbell() {
        let runtime = runtime();
        let (sender, watch, listening) = progress_channel().expect("socket pair");
        let mut doorbell =
            runtime.block_on(async { PersistedDoorbell::new(watch, Some(listening)) });
        assert!(doorbell.doorbell.is_some(), "listening on the socket");
        let publisher = std::thread::spawn(move || {
            for number in 1..=2_000 {
                sender.persisted(number);
                // An older number is not published, and does not ring.
                sender.persisted(number - 1);
                if number % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sender
        });
        let seen = runtime.block_on(wait_until(&mut doorbell, 2_000));
        assert!(!seen.is_empty());
        let sender = publisher.join().expect("publisher");
        // More rings than the socket holds were sent unheard meanwhile,
        // and the waiter still hears the next change (and only then).
        for number in 2_001..=300_000 {
            sender.persisted(number);
        }
        runtime.block_on(async {
            assert_eq!(
                doorbell.changed().await.expect("no failure").number,
                300_000
            );
            let nothing_new =
                tokio::time::timeout(Duration::from_millis(50), doorbell.changed()).await;
            assert!(
                nothing_new.is_err(),
                "no change, no answer: {nothing_new:?}"
            );
        });
    }

    #[test]
    fn a_failure_and_the_actor_ending_wake_the_waiter_with_the_cause() {
        let runtime = runtime();
        let (failing, watch, listening) = progress_channel().expect("socket pair");
        let mut doorbell =
            runtime.block_on(async { PersistedDoorbell::new(watch, Some(listening)) });
        let waiting = runtime.spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), doorbell.changed())
                .await
                .expect("woken within 10 s")
        });
        std::thread::sleep(Duration::from_millis(20));
        let failure: SharedPersistError = Arc::new(PersistError::Stopped);
        failing.failed(&failure);
        let outcome = runtime.block_on(waiting).expect("waiter");
        assert!(Arc::ptr_eq(&outcome.expect_err("the failure"), &failure));

        let (ending, watch, listening) = progress_channel().expect("socket pair");
        let mut doorbell =
            runtime.block_on(async { PersistedDoorbell::new(watch, Some(listening)) });
        let waiting = runtime.spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), doorbell.changed())
                .await
                .expect("woken within 10 s")
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(ending);
        let outcome = runtime.block_on(waiting).expect("waiter");
        assert!(
            matches!(
                outcome.as_ref().map_err(|e| &**e),
                Err(PersistError::Stopped)
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn without_a_doorbell_the_watch_wakes_the_waiter() {
        let runtime = runtime();
        let (sender, watch, _listening) = progress_channel().expect("socket pair");
        let mut doorbell = runtime.block_on(async { PersistedDoorbell::new(watch, None) });
        assert!(doorbell.doorbell.is_none());
        let publisher = std::thread::spawn(move || {
            for number in 1..=500 {
                sender.persisted(number);
            }
            sender
        });
        runtime.block_on(wait_until(&mut doorbell, 500));
        drop(publisher.join().expect("publisher"));
    }
}
