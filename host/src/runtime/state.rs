//! The per-instance store data: WASI context, memory limiter, and the
//! [`BatchScope`] that the host imports read and write.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::HostServices;
use crate::audit::DeliveryRecord;

/// Maximum log lines a batch may write through the `log` import. Lines past
/// it are counted and dropped, so a worker logging in a loop cannot flood the
/// host's log.
pub(super) const MAX_LOG_LINES: u32 = 1_000;

/// A delivery row whose status depends on what happens to its message, such
/// as a failed send that becomes `retrying` or `dead`.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// The row; its status is replaced when the batch's outcome is known.
    pub record: DeliveryRecord,
    /// Whether the status is already final (`duplicate-suppressed`).
    pub status_is_final: bool,
    /// Whether the gateway was contacted. False for a notification rejected
    /// as invalid and for a suppressed duplicate.
    pub gateway_contacted: bool,
}

/// Resources one batch may use, and the effects it had.
pub struct BatchScope {
    /// Worker name.
    pub worker: Arc<str>,
    /// Worker version.
    pub version: u32,
    /// Attempt number of each message in the batch, by id. Imports that name
    /// a message check it against this map.
    pub attempts: HashMap<String, u32>,
    /// Host services.
    pub services: Arc<HostServices>,
    /// The worker's settings, for the `config` import.
    pub settings: Arc<BTreeMap<String, String>>,
    /// Delivery rows to write with the batch's outcome.
    pub pending_deliveries: Vec<PendingDelivery>,
    /// Log lines written so far.
    pub log_lines: u32,
    /// Log lines dropped over [`MAX_LOG_LINES`].
    pub dropped_log_lines: u32,
    /// Time spent in finished gateway calls.
    pub gateway_time: Duration,
    /// Start of the gateway call in progress, if any. A batch cut off at its
    /// deadline may have been waiting in one.
    pub gateway_call_started: Option<Instant>,
}

impl BatchScope {
    /// Creates an empty scope for a batch of `worker` at `version`.
    pub fn new(
        worker: Arc<str>,
        version: u32,
        services: Arc<HostServices>,
        settings: Arc<BTreeMap<String, String>>,
    ) -> Self {
        Self {
            worker,
            version,
            attempts: HashMap::new(),
            services,
            settings,
            pending_deliveries: Vec::new(),
            log_lines: 0,
            dropped_log_lines: 0,
            gateway_time: Duration::ZERO,
            gateway_call_started: None,
        }
    }

    /// Returns the time spent waiting on gateways, including a call still in
    /// progress.
    pub fn time_in_gateways(&self) -> Duration {
        let in_progress = self
            .gateway_call_started
            .map(|started| started.elapsed())
            .unwrap_or_default();
        self.gateway_time + in_progress
    }
}

/// Store data of one instance.
pub(super) struct WorkerState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) scope: BatchScope,
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses linear-memory growth past a limit and remembers that it did, so a
/// trap that follows can be reported as a memory limit.
pub(super) struct MemoryLimiter {
    limit: usize,
    refused: bool,
}

impl MemoryLimiter {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            refused: false,
        }
    }

    /// Returns whether a growth request was refused.
    pub(super) fn refused(&self) -> bool {
        self.refused
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any
        // real worker.
        Ok(desired <= 1_000_000)
    }
}
