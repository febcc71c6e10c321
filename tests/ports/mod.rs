//! Loopback ports for the servers the tests start, picked so that no two
//! picks of one lane collide and no outgoing connection can be handed one
//! between the pick and the server's bind.
//!
//! Binding `127.0.0.1:0` and dropping the listener returns a port of the
//! kernel's ephemeral range that is free again at once: until the server
//! binds it, any connection the machine opens (the tests' HTTP clients, the
//! peers' dials) may be given it as its local port, and a concurrent pick
//! may return it again. The ports here come from below Linux's ephemeral
//! range (32768 and up by default), in turn from a counter per lane, and are
//! checked free by a bind.
//!
//! A test binary that includes two modules picking ports gives each its own
//! lane, so that their counters never meet.
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The first port of lane 0.
const FIRST_PORT: u32 = 20_000;
/// Ports per lane; two lanes end at 31,999, below the ephemeral range.
const LANE_PORTS: u32 = 6_000;

/// Picks made so far in this copy of the module.
static PICKS: AtomicU32 = AtomicU32::new(0);

/// A port of `lane` (0 or 1) that was free when picked and that no earlier
/// pick of this lane in this process returned.
pub fn free_port_in_lane(lane: u32) -> u16 {
    assert!(
        lane < 2,
        "lane {lane}: only lanes 0 and 1 lie below the ephemeral range"
    );
    // Test binaries run one after another; starting where the process id
    // says keeps one binary off the ports the previous one's servers held.
    let start = std::process::id().wrapping_mul(7_919) % LANE_PORTS;
    for _ in 0..LANE_PORTS {
        let offset = (start + PICKS.fetch_add(1, Ordering::Relaxed)) % LANE_PORTS;
        let port = FIRST_PORT + lane * LANE_PORTS + offset;
        let port = u16::try_from(port).expect("ports of both lanes fit in u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in lane {lane}");
}
