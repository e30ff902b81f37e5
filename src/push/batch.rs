//! Group commit: the writes of one tenant that queued up together are applied one after the
//! other in one transaction, each in a savepoint of its own, and answered after it commits.
//! A write that is refused (400, 404, 409) rolls back alone and is logged with its error.

use std::time::Instant;

use crate::store::Connection;

use super::write::{self, WriteError, WriteOp, Written};
use crate::config::{ScimPushConfig, TenantConfig};
use crate::scim_protocol::ScimError;
use crate::store::push::{prune_requests, NewPushRequest, PushTx, PushTxError};
use crate::store::StoreError;

/// The request log keeps this many requests per tenant.
pub const KEEP_REQUESTS: u64 = 100_000;

/// One queued write, as the batch needs it.
pub struct Input {
    pub op: WriteOp,
    pub log: NewPushRequest,
    pub received: Instant,
}

pub enum BatchOutcome {
    /// A sync holds the tenant: nothing was applied; try again later.
    Busy { holder: String, until: String },
    /// One result per input, in order; all committed.
    Done {
        results: Vec<Result<Written, ScimError>>,
        last_seq: u64,
    },
}

#[allow(clippy::needless_pass_by_value)] // the batch is handed over to the blocking pool
pub fn apply_batch(
    conn: &mut Connection,
    tenant: &TenantConfig,
    push: &ScimPushConfig,
    inputs: Vec<Input>,
) -> Result<BatchOutcome, StoreError> {
    // Most batches refuse nothing: they run without savepoints (a savepoint copies every
    // page a write touches). The first refusal rolls the whole transaction back, unanswered,
    // and the batch runs again with a savepoint per write.
    match apply_in_transaction(conn, tenant, push, &inputs, false)? {
        Some(outcome) => Ok(outcome),
        None => Ok(apply_in_transaction(conn, tenant, push, &inputs, true)?
            .expect("with savepoints every refusal is rolled back alone")),
    }
}

/// `None`: a write was refused without savepoints; nothing was committed.
fn apply_in_transaction(
    conn: &mut Connection,
    tenant: &TenantConfig,
    push: &ScimPushConfig,
    inputs: &[Input],
    savepoints: bool,
) -> Result<Option<BatchOutcome>, StoreError> {
    let mut tx = match PushTx::begin(conn, &tenant.id) {
        Ok(tx) => tx,
        Err(PushTxError::Busy { holder, until, .. }) => {
            return Ok(Some(BatchOutcome::Busy { holder, until }))
        }
        Err(PushTxError::Store(err)) => return Err(err),
    };
    let mut results = Vec::with_capacity(inputs.len());
    let mut last_request = 0;
    for input in inputs {
        let seq_before = tx.last_seq();
        if savepoints {
            tx.savepoint()?;
        }
        let mut log = input.log.clone();
        log.resource_kind = Some(input.op.kind());
        log.resource_id = input.op.target().map(str::to_owned);
        let request_id = tx.log_request(&log)?;
        last_request = request_id;
        match write::apply(&mut tx, tenant, push, input.op.clone(), request_id) {
            Ok(written) => {
                let latency = input.received.elapsed().as_micros() as i64;
                tx.finish_request(request_id, written.status, None, written.seqs, latency)?;
                if log.resource_id.is_none() {
                    tx.set_request_resource(request_id, &written.resource_id)?;
                }
                if savepoints {
                    tx.release_savepoint()?;
                }
                results.push(Ok(written));
            }
            Err(_) if !savepoints => return Ok(None),
            Err(err) => {
                tx.rollback_savepoint(seq_before)?;
                let error = match err {
                    WriteError::Scim(error) => error,
                    WriteError::Store(error) => {
                        tracing::error!(tenant = %tenant.id, "a push write failed in the store: {error}");
                        ScimError::internal(format!("dirsync could not store the write: {error}"))
                    }
                };
                log.status = error.status;
                log.detail = Some(error.detail.clone());
                log.latency_us = input.received.elapsed().as_micros() as i64;
                last_request = tx.log_request(&log)?;
                results.push(Err(error));
            }
        }
    }
    let last_seq = tx.commit()?;
    // Now and then, not every batch: a prune is a range delete over the log.
    if last_request % 1000 < 16 {
        if let Err(err) = prune_requests(conn, &tenant.id, KEEP_REQUESTS) {
            tracing::warn!(tenant = %tenant.id, "cannot prune the push request log: {err}");
        }
    }
    Ok(Some(BatchOutcome::Done { results, last_seq }))
}
