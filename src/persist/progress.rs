//! How acknowledgements travel back: the highest durable Ready number, or
//! the failure that stopped the actor, on a `tokio::sync::watch` channel;
//! and how the raft actor (a tokio task) is woken for them: a doorbell
//! when the actor was idle, a `Notify` when it is busy.
//!
//! Owns: [`Persisted`], [`PersistProgress`], the publishing side
//! ([`ProgressSender`]) and the awaiting sides, [`PersistedWatch`] and
//! [`PersistedDoorbell`].
//! Guarantees: the published number only grows, and every Ready up to it is
//! durable (or needed no sync); once a failure is published it stays, and
//! the number never moves again; the wake (doorbell or `Notify`) follows
//! the watch's change, so whoever is woken and then reads the watch sees
//! it, and a wake with no waiter is kept (bytes in the socket, the
//! `Notify`'s permit), so none is lost.
//! May not touch: IO other than the doorbell's socket, the request queue.
//!
//! Why two wake paths: the persistence thread is not a tokio worker. A
//! task woken from it through a watch or a `Notify` goes on the runtime's
//! shared queue and a parked worker is unparked to look for it (tokio
//! unparks one more when the last searching worker finds work,
//! tokio-rs/tokio#4383). The doorbell is a Unix socket registered with the
//! runtime's IO driver instead: the worker parked in the driver wakes on
//! it and runs the task from its own queue. Measured on a 2-vCPU VM
//! (BENCHMARKS.md, issue 18, goal 3), the doorbell alone took one client's
//! write p50 from 1.76× to 1.54× the raw fdatasync, but cost 3-node
//! throughput a quarter: a busy worker polls the IO driver only every
//! `event_interval` (61) tasks. So the actor rings the doorbell only for a
//! small batch with nothing queued behind it (one client, or a quiet
//! moment), and notifies through the shared queue otherwise.

use super::error::{PersistError, SharedPersistError};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use tokio::sync::{Notify, watch};

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

impl PersistProgress {
    /// What a waiter is told: the acknowledgement, or the failure.
    fn outcome(&self) -> Result<Persisted, SharedPersistError> {
        match &self.failure {
            Some(failure) => Err(Arc::clone(failure)),
            None => Ok(self.persisted),
        }
    }
}

/// The actor's side: publishes into the watch, then wakes the listener.
#[derive(Debug)]
pub(crate) struct ProgressSender {
    // Declared first so that it drops first: a waiter woken by the
    // doorbell's end of stream then finds the watch closed.
    watch: watch::Sender<PersistProgress>,
    /// The busy path's wake.
    notify: Arc<Notify>,
    /// Non-blocking; when full, a ring is pending and that is enough.
    doorbell: UnixStream,
}

impl ProgressSender {
    /// Publishes `number` if it is newer than the last acknowledgement;
    /// `idle` says the node looks quiet (the actor's judgement: a small
    /// batch with nothing queued behind it), the doorbell's case.
    pub(crate) fn persisted(&self, number: u64, idle: bool) {
        let changed = self.watch.send_if_modified(|progress| {
            let newer = number > progress.persisted.number;
            if newer {
                progress.persisted.number = number;
            }
            newer
        });
        if !changed {
            return;
        }
        if idle {
            self.ring();
        } else {
            self.notify.notify_one();
        }
    }

    /// Publishes the failure that stops the actor.
    pub(crate) fn failed(&self, failure: &SharedPersistError) {
        self.watch.send_modify(|progress| {
            progress.failure = Some(Arc::clone(failure));
        });
        self.ring();
        self.notify.notify_one();
    }

    fn ring(&self) {
        // A full socket (WouldBlock) holds an unheard ring already; a
        // closed one has no listener left.
        let _ = (&self.doorbell).write(&[1]);
    }
}

/// The listening ends of the two wake paths, for [`PersistedDoorbell::new`].
#[derive(Debug)]
pub(crate) struct Listener {
    doorbell: UnixStream,
    notify: Arc<Notify>,
}

/// A new progress channel: the actor's side, the watch, and the listening
/// ends of its wakes.
pub(crate) fn progress_channel() -> std::io::Result<(ProgressSender, PersistedWatch, Listener)> {
    let (watch_sender, receiver) = watch::channel(PersistProgress::default());
    let (ringing, listening) = UnixStream::pair()?;
    ringing.set_nonblocking(true)?;
    listening.set_nonblocking(true)?;
    let notify = Arc::new(Notify::new());
    let sender = ProgressSender {
        watch: watch_sender,
        notify: Arc::clone(&notify),
        doorbell: ringing,
    };
    let listener = Listener {
        doorbell: listening,
        notify,
    };
    Ok((sender, PersistedWatch::new(receiver), listener))
}

/// The acknowledgements awaited through the doorbell and the `Notify`
/// (see the module doc for why); for the one task that drives the node.
#[derive(Debug)]
pub struct PersistedDoorbell {
    watch: PersistedWatch,
    /// `None` when there is no listener (taken already) or the reactor
    /// refused the socket: then the watch wakes the task.
    wakes: Option<(tokio::net::UnixStream, Arc<Notify>)>,
}

impl PersistedDoorbell {
    /// Listens on `doorbell` (the end [`progress_channel`] gave) for
    /// changes of `watch`, or on the watch alone when there is no doorbell
    /// or the reactor refuses it. Call it on a tokio runtime with IO
    /// enabled: tokio panics otherwise (`Node::start` documents it).
    pub(crate) fn new(watch: PersistedWatch, listener: Option<Listener>) -> PersistedDoorbell {
        let wakes = listener.and_then(|listener| {
            match tokio::net::UnixStream::from_std(listener.doorbell) {
                Ok(doorbell) => Some((doorbell, listener.notify)),
                Err(error) => {
                    tracing::info!(%error, "persistence acknowledgements wake through the watch");
                    None
                }
            }
        });
        PersistedDoorbell { watch, wakes }
    }

    /// As [`PersistedWatch::changed`].
    pub async fn changed(&mut self) -> Result<Persisted, SharedPersistError> {
        let Some((doorbell, notify)) = &self.wakes else {
            return self.watch.changed().await;
        };
        loop {
            if let Some(outcome) = self.watch.take_change() {
                return outcome;
            }
            // An error other than "nothing to read" is treated as a ring:
            // the watch says what happened.
            tokio::select! {
                _ = doorbell.readable() => {}
                () = notify.notified() => continue,
            }
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
        self.receiver.borrow().outcome()
    }

    /// Waits for an acknowledgement newer than the last one this watch
    /// returned, and returns it; fails when the actor failed or stopped.
    pub async fn changed(&mut self) -> Result<Persisted, SharedPersistError> {
        if self.receiver.changed().await.is_err() {
            return Err(self.stopped_error());
        }
        self.receiver.borrow_and_update().outcome()
    }

    /// The acknowledgement newer than the last one this watch returned, if
    /// there is one, without waiting; the failure once the actor failed or
    /// stopped.
    pub(crate) fn take_change(&mut self) -> Option<Result<Persisted, SharedPersistError>> {
        match self.receiver.has_changed() {
            Ok(false) => None,
            Ok(true) => Some(self.receiver.borrow_and_update().outcome()),
            Err(_) => Some(Err(self.stopped_error())),
        }
    }

    /// Waits until Ready `number` is acknowledged.
    pub async fn wait_for(&mut self, number: u64) -> Result<Persisted, SharedPersistError> {
        let outcome = self
            .receiver
            .wait_for(|p| p.failure.is_some() || p.persisted.number >= number)
            .await
            .map(|p| p.outcome());
        match outcome {
            Ok(outcome) => outcome,
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

    /// A progress channel whose acknowledgements are heard through the
    /// doorbell and the notify, as the raft actor hears them.
    fn listening(runtime: &tokio::runtime::Runtime) -> (ProgressSender, PersistedDoorbell) {
        let (sender, watch, listener) = progress_channel().expect("socket pair");
        let doorbell = runtime.block_on(async { PersistedDoorbell::new(watch, Some(listener)) });
        (sender, doorbell)
    }

    /// A task waiting (at most 10 s) for `doorbell`'s next change.
    fn waiter(
        runtime: &tokio::runtime::Runtime,
        mut doorbell: PersistedDoorbell,
    ) -> tokio::task::JoinHandle<Result<Persisted, SharedPersistError>> {
        runtime.spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), doorbell.changed())
                .await
                .expect("woken within 10 s")
        })
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
        let (sender, mut doorbell) = listening(&runtime);
        assert!(doorbell.wakes.is_some(), "listening on the socket");
        let publisher = std::thread::spawn(move || {
            for number in 1..=2_000 {
                sender.persisted(number, true);
                // An older number is not published, and does not ring.
                sender.persisted(number - 1, true);
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
            sender.persisted(number, true);
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
        let (failing, doorbell) = listening(&runtime);
        let waiting = waiter(&runtime, doorbell);
        std::thread::sleep(Duration::from_millis(20));
        let failure: SharedPersistError = Arc::new(PersistError::Stopped);
        failing.failed(&failure);
        let outcome = runtime.block_on(waiting).expect("waiter");
        assert!(Arc::ptr_eq(&outcome.expect_err("the failure"), &failure));

        let (ending, doorbell) = listening(&runtime);
        let waiting = waiter(&runtime, doorbell);
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
    fn acknowledgements_with_work_queued_behind_them_wake_through_the_notify() {
        let runtime = runtime();
        let (sender, mut doorbell) = listening(&runtime);
        let publisher = std::thread::spawn(move || {
            for number in 1..=2_000 {
                sender.persisted(number, false);
                if number % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sender
        });
        runtime.block_on(wait_until(&mut doorbell, 2_000));
        let sender = publisher.join().expect("publisher");
        // Nothing was rung: every wake went through the notify.
        let (socket, _) = doorbell.wakes.as_ref().expect("listening");
        let mut byte = [0u8; 1];
        assert!(
            matches!(socket.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        );
        // Both paths mixed, as a node sees them, lose nothing.
        let publisher = std::thread::spawn(move || {
            for number in 2_001..=4_000 {
                sender.persisted(number, number % 3 == 0);
            }
            sender
        });
        runtime.block_on(wait_until(&mut doorbell, 4_000));
        drop(publisher.join().expect("publisher"));
    }

    #[test]
    fn without_a_doorbell_the_watch_wakes_the_waiter() {
        let runtime = runtime();
        let (sender, watch, _listening) = progress_channel().expect("socket pair");
        let mut doorbell = runtime.block_on(async { PersistedDoorbell::new(watch, None) });
        assert!(doorbell.wakes.is_none());
        let publisher = std::thread::spawn(move || {
            for number in 1..=500 {
                sender.persisted(number, number % 2 == 0);
            }
            sender
        });
        runtime.block_on(wait_until(&mut doorbell, 500));
        drop(publisher.join().expect("publisher"));
    }
}
