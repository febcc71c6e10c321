//! Transactions, applied as etcd v3.4's apply layer does: the request's
//! shape and the distinct-keys rule first; then every compare (also those
//! of nested txns) is decided against the store as it was before the txn,
//! which fixes the path; then the puts and the reads along that path are
//! checked (lease exists, key exists for `ignore_*`, read revision not
//! future nor compacted); only then do the operations run, sharing one
//! main revision, each read seeing the writes before it.

use super::MvccStore;
use super::error::MvccError;
use super::ops;
use super::types::{
    Applied, PutRequest, RangeRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use super::validate;
use super::write::Writer;

/// The branches a txn takes: whether its compares held, and the same for
/// each nested txn of the branch taken, in order.
struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

impl MvccStore {
    /// Runs a transaction. `lease_exists` tells whether a lease id exists
    /// (asked for each put on the path that attaches a lease). On error
    /// nothing changed. A txn that changes nothing (reads only, deletions
    /// matching nothing) does not move the revision.
    ///
    /// Checks the txn's shape without an operation limit; the gRPC layer
    /// enforces `--max-txn-ops` with [`super::validate_txn`] before
    /// proposing, as etcd does.
    pub fn txn(
        &mut self,
        request: &TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Applied<TxnResponse>, MvccError> {
        validate::txn(request, usize::MAX)?;
        let path = self.path(request);
        self.check_puts(request, &path, lease_exists)?;
        self.check_ranges(request, &path)?;
        let mut writer = Writer::new(self);
        match run(&mut writer, request, &path) {
            Ok(mut response) => {
                let events = writer.finish();
                response.revision = self.current;
                Ok(Applied { response, events })
            }
            Err(e) => {
                writer.abort();
                Err(e)
            }
        }
    }

    fn path(&self, request: &TxnRequest) -> Path {
        let succeeded = request.compare.iter().all(|c| self.compare_holds(c));
        let nested = branch(request, succeeded)
            .iter()
            .filter_map(|op| match op {
                RequestOp::Txn(t) => Some(self.path(t)),
                _ => None,
            })
            .collect();
        Path { succeeded, nested }
    }

    /// A put may run: its lease exists, and for `ignore_value` /
    /// `ignore_lease` the key exists.
    pub(crate) fn check_put(
        &self,
        put: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(), MvccError> {
        if put.lease != 0 && !lease_exists(put.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        if put.ignore_value || put.ignore_lease {
            let live = self
                .keys
                .get(&put.key[..])
                .and_then(|h| h.live_at(self.current));
            if live.is_none() {
                return Err(MvccError::KeyNotFound);
            }
        }
        Ok(())
    }

    fn check_puts(
        &self,
        request: &TxnRequest,
        path: &Path,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(), MvccError> {
        let mut nested = path.nested.iter();
        for op in branch(request, path.succeeded) {
            match op {
                RequestOp::Put(p) => self.check_put(p, lease_exists)?,
                RequestOp::Txn(t) => {
                    if let Some(p) = nested.next() {
                        self.check_puts(t, p, lease_exists)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_ranges(&self, request: &TxnRequest, path: &Path) -> Result<(), MvccError> {
        let mut nested = path.nested.iter();
        for op in branch(request, path.succeeded) {
            match op {
                RequestOp::Range(r) => self.check_range(r)?,
                RequestOp::Txn(t) => {
                    if let Some(p) = nested.next() {
                        self.check_ranges(t, p)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A read inside a txn may ask for any revision from the compacted one
    /// up to the store's revision before the txn.
    fn check_range(&self, range: &RangeRequest) -> Result<(), MvccError> {
        if range.revision == 0 {
            return Ok(());
        }
        self.read_revision(range.revision, self.current).map(|_| ())
    }
}

fn branch(request: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &request.success
    } else {
        &request.failure
    }
}

/// Runs the branch `path` chose; every response carries the revision the
/// transaction sees after that operation.
fn run(
    writer: &mut Writer<'_>,
    request: &TxnRequest,
    path: &Path,
) -> Result<TxnResponse, MvccError> {
    let mut nested = path.nested.iter();
    let ops = branch(request, path.succeeded);
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match op {
            RequestOp::Range(r) => {
                let view = writer.view_revision();
                ResponseOp::Range(writer.store().range_in_view(r, view)?)
            }
            RequestOp::Put(p) => ResponseOp::Put(ops::put(writer, p)?),
            RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(ops::delete_range(writer, d)),
            RequestOp::Txn(t) => match nested.next() {
                Some(p) => ResponseOp::Txn(run(writer, t, p)?),
                None => continue,
            },
        };
        responses.push(response);
    }
    Ok(TxnResponse {
        succeeded: path.succeeded,
        responses,
        revision: writer.view_revision(),
    })
}
