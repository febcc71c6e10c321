//! A test-only hook that makes one actor panic, so that process tests can
//! check what a panic does to a node (it stops, with the cause, and
//! `ringraft serve` exits non-zero) without a bug to trigger it.
//!
//! Owns: reading `RINGRAFT_TEST_PANIC` (`raft`: the raft actor panics on
//! the first client proposal it takes; `apply`: the apply actor panics on
//! the first batch holding a client command), once, when a node starts.
//! Guarantees: unset (or any other value), nothing changes. It is not part
//! of the documented configuration.
//! May not touch: anything but deciding whether to panic.

/// The environment variable read at `Node::start`.
pub(crate) const TEST_PANIC_ENV: &str = "RINGRAFT_TEST_PANIC";

/// Which actor panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TestPanic {
    /// The raft actor, on the first client proposal.
    Raft,
    /// The apply actor, on the first batch holding a client command.
    Apply,
}

impl TestPanic {
    /// The hook the environment asks for, if any.
    pub(crate) fn from_env() -> Option<TestPanic> {
        match std::env::var(TEST_PANIC_ENV).as_deref() {
            Ok("raft") => Some(TestPanic::Raft),
            Ok("apply") => Some(TestPanic::Apply),
            _ => None,
        }
    }

    /// Panics when `self` names `actor`.
    pub(crate) fn fire(hook: Option<TestPanic>, actor: TestPanic) {
        if hook == Some(actor) {
            panic!("{TEST_PANIC_ENV}: the {actor:?} actor panics, as the test asked");
        }
    }
}
