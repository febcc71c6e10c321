//! Exporting ringraft's metrics to Prometheus.
//!
//! Owns: the Prometheus recorder's setup — histogram buckets (starting in
//! the tens of microseconds: our fsyncs take about 0.25 ms, and etcd's
//! 1 ms lowest bucket would put all of them in one bucket) — and
//! registering every metric's description.
//! Guarantees: [`install_prometheus`] installs the process-wide recorder at
//! most once; every metric name comes from one of the `metric_names`
//! modules (`persist`, `node`, `transport`), which this module describes.
//! May not touch: what is measured (the actors record through the
//! `metrics` facade).
//!
//! Embedding: an application that has its own recorder gets the same
//! metrics through it (call [`describe_all`] after installing it); one
//! that wants Prometheus text calls [`install_prometheus`] and serves
//! [`PrometheusHandle::render`].
//!
//! TODO (observability issue): one declaration list with units and types,
//! checked against the dashboard and alert rules.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds of duration histograms, in seconds: 10 µs to 10 s.
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds of count histograms (Readies or entries per fsync).
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// Registers the description and unit of every ringraft metric with the
/// installed recorder.
pub fn describe_all() {
    crate::persist::metric_names::describe_metrics();
    crate::node::metric_names::describe_metrics();
    crate::transport::metric_names::describe_metrics();
}

/// A Prometheus recorder with ringraft's buckets, not installed (tests,
/// or an application combining recorders).
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_string()),
            DURATION_BUCKETS_SECONDS,
        )?
        .set_buckets_for_metric(Matcher::Suffix("_per_fsync".to_string()), COUNT_BUCKETS)
}

/// Installs the process-wide Prometheus recorder and describes every
/// metric. Fails if a recorder is already installed. The caller runs
/// [`PrometheusHandle::run_upkeep`] now and then (the server does, every
/// few seconds) so that histograms do not grow without bound.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = prometheus_builder()?.install_recorder()?;
    describe_all();
    Ok(handle)
}
