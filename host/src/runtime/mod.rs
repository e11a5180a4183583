//! The WebAssembly runtime. It owns one wasmtime engine with the component
//! model, async support and the pooling allocator. It validates and compiles
//! uploaded components, and runs each batch in one fresh instance.
//!
//! Components are compiled once, cached on disk as precompiled artifacts
//! keyed by content digest and engine, and pre-instantiated, so that a batch
//! costs one cheap instantiation. Every instance runs under a linear-memory
//! limit and a wall-clock deadline enforced through epoch interruption. WASI
//! gives it clocks, random numbers and captured stdout/stderr, and nothing
//! else: no preopened directories, no sockets, no environment variables.
//!
//! The host side of each WIT interface lives in [`host`]; this module never
//! decides what happens to a message after its batch.

pub mod bindings;
mod host;
mod output;
mod state;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::{ResourceTable, WasiCtxBuilder};

use crate::audit::AuditLog;
use crate::config::RuntimeConfig;
use crate::gateway::Gateways;
use crate::queue::{Queue, ReservedMessage};
use crate::template::TemplateStore;
use bindings::{NotificationWorker, NotificationWorkerPre};
use output::CapturedOutput;
pub use state::{BatchScope, PendingDelivery};
use state::{MemoryLimiter, WorkerState};

/// Interval between epoch ticks. A running guest yields to the async
/// executor at every tick and is stopped at the first tick past its deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of stdout and of stderr kept per batch. The rest is counted and
/// dropped.
const OUTPUT_CAPACITY: usize = 64 * 1024;

/// Services the host lends to every instance.
pub struct HostServices {
    /// Configured gateways.
    pub gateways: Gateways,
    /// The delivery log.
    pub audit: AuditLog,
    /// The queue, for the `queue` import.
    pub queue: Queue,
    /// Locks that let one send per worker and idempotency key run at a time.
    pub send_locks: KeyLocks,
    /// Stored templates, for the `template` import.
    pub templates: TemplateStore,
}

/// Named async locks, created on first use and dropped when unused.
///
/// The idempotency check and the send are two steps. Without a lock, two
/// batches sending the same key at once would both find it unsent.
// NOTE: the locks are per process. Two processes sharing one database can
// still race on the same key.
#[derive(Default)]
pub struct KeyLocks {
    locks: std::sync::Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    /// Waits for the lock named `key` and returns its guard.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if locks.len() > 1_024 {
                locks.retain(|_, lock| lock.strong_count() > 0);
            }
            match locks.get(key).and_then(std::sync::Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = std::sync::Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key.to_owned(), std::sync::Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// Reason an upload was rejected.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The bytes are not WebAssembly at all.
    #[error(
        "the upload is not a WebAssembly binary (it does not start with \\0asm); \
         upload the .wasm file that cargo built for wasm32-wasip2"
    )]
    NotWasm,
    /// The bytes are a core module, not a component.
    #[error(
        "the upload is a core WebAssembly module, not a component; build the worker for \
         the wasm32-wasip2 target, or wrap the module with `wasm-tools component new`"
    )]
    CoreModule,
    /// The header names a binary format this runtime does not know.
    #[error("the upload has an unsupported WebAssembly version or layer ({0})")]
    UnknownVersion(String),
    /// The component is malformed or does not compile.
    #[error("the component is invalid: {0}")]
    Invalid(String),
    /// The component does not target the `notification-worker` world.
    #[error("the component does not implement the herald:worker/notification-worker world: {0}")]
    WrongWorld(String),
}

/// A worker version compiled and linked, ready to instantiate.
pub struct PreparedWorker {
    /// Worker name.
    pub name: String,
    /// Version number.
    pub version: u32,
    /// Content digest.
    pub digest: String,
    pre: NotificationWorkerPre<WorkerState>,
}

/// Per-batch limits, taken from the worker's binding.
#[derive(Debug, Clone, Copy)]
pub struct InstanceLimits {
    /// Maximum linear memory in bytes.
    pub memory: usize,
    /// Wall-clock limit of the whole batch.
    pub deadline: Duration,
}

/// A worker's decision for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerOutcome {
    /// Handled.
    Done,
    /// Failed, and a later attempt may succeed.
    Retry {
        /// Why.
        error: String,
        /// Delay the worker asked for.
        delay: Option<Duration>,
    },
    /// Failed for good.
    Fail(String),
    /// Not due yet. Run again after the delay.
    Defer(Duration),
}

/// Fault that stopped a batch before it returned outcomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The guest trapped: a panic, an out-of-bounds access, a stack overflow,
    /// or a refused memory allocation.
    #[error("worker trapped: {0}")]
    Trap(String),
    /// The batch ran past its wall-clock deadline.
    #[error("worker exceeded its deadline of {0:?}")]
    Deadline(Duration),
    /// The worker returned the wrong number of outcomes.
    #[error("worker returned {actual} outcomes for a batch of {expected}")]
    OutcomeCount {
        /// Messages in the batch.
        expected: usize,
        /// Outcomes returned.
        actual: usize,
    },
    /// The instance could not be created.
    #[error("failed to instantiate worker: {0}")]
    Instantiate(String),
}

/// The result of one batch.
pub struct BatchRun {
    /// One outcome per message, in batch order, or the fault that stopped it.
    pub result: Result<Vec<WorkerOutcome>, Fault>,
    /// Effects of the batch's import calls, such as pending delivery rows.
    pub scope: BatchScope,
    /// The guest's stdout.
    pub stdout: Vec<u8>,
    /// The guest's stderr.
    pub stderr: Vec<u8>,
    /// Bytes of stdout and stderr dropped over the capture limit.
    pub dropped_output: u64,
    /// How long the batch took, instantiation included.
    pub elapsed: Duration,
}

/// The engine, its linker, and the compiled-component cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<WorkerState>,
    cache_dir: Option<PathBuf>,
}

impl Runtime {
    /// Creates the engine with the pooling allocator sized for
    /// `config.max_instances` live instances, and starts its epoch ticker.
    /// Compiled components are cached in `cache_dir` when given.
    pub fn new(config: &RuntimeConfig, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let instances = config.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances);
        // A Rust component built for wasm32-wasip2 contains a handful of core
        // instances, one or two memories and a few tables.
        pool.total_core_instances(instances.saturating_mul(8));
        pool.total_memories(instances.saturating_mul(2));
        pool.total_tables(instances.saturating_mul(4));
        pool.total_stacks(instances);

        let mut engine_config = EngineConfig::new();
        engine_config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&engine_config)
            .map_err(anyhow::Error::from)
            .map_err(|error| {
                error.context(
                    "failed to create the WebAssembly engine; if virtual memory is limited \
                 (ulimit -v), lower runtime.max_instances",
                )
            })?;

        let mut linker = Linker::<WorkerState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        NotificationWorker::add_to_linker::<WorkerState, HasSelf<WorkerState>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)?;

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|error| {
                anyhow::anyhow!(
                    "failed to create cache folder \"{}\": {error}",
                    dir.display()
                )
            })?;
        }
        spawn_epoch_ticker(&engine);
        Ok(Self {
            engine,
            linker,
            cache_dir,
        })
    }

    /// Checks that `bytes` are a component of the `notification-worker` world,
    /// compiles it and links it. This runs Cranelift, so call it off the async
    /// threads. A component is cached on disk only once it has linked, so a
    /// rejected upload leaves nothing behind.
    pub fn prepare(
        &self,
        name: &str,
        version: u32,
        digest: &str,
        bytes: &[u8],
    ) -> Result<PreparedWorker, UploadError> {
        check_header(bytes)?;
        if let Some(component) = self.load_cached(digest) {
            return self.link(name, version, digest, &component);
        }

        let started = Instant::now();
        let component = Component::new(&self.engine, bytes)
            .map_err(|error| UploadError::Invalid(format!("{error:#}")))?;
        let prepared = self.link(name, version, digest, &component)?;
        tracing::info!(
            digest,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled component"
        );
        self.store_cached(digest, &component);
        Ok(prepared)
    }

    fn link(
        &self,
        name: &str,
        version: u32,
        digest: &str,
        component: &Component,
    ) -> Result<PreparedWorker, UploadError> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|error| UploadError::WrongWorld(format!("{error:#}")))?;
        let pre = NotificationWorkerPre::new(instance_pre)
            .map_err(|error| UploadError::WrongWorld(format!("{error:#}")))?;
        Ok(PreparedWorker {
            name: name.to_owned(),
            version,
            digest: digest.to_owned(),
            pre,
        })
    }

    fn load_cached(&self, digest: &str) -> Option<Component> {
        let path = self.cache_path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `Component::serialize` of this
        // process or an earlier one, into the data directory, which only
        // Herald writes. The file name includes the engine's compatibility
        // hash, so an artifact from another wasmtime or config is never
        // picked up; deserialize_file also checks it.
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring unusable compiled component cache");
                None
            }
        }
    }

    fn store_cached(&self, digest: &str, component: &Component) {
        let Some(path) = self.cache_path(digest) else {
            return;
        };
        let written = component
            .serialize()
            .map_err(|error| std::io::Error::other(error.to_string()))
            .and_then(|artifact| {
                let temporary = path.with_extension("tmp");
                std::fs::write(&temporary, artifact)?;
                std::fs::rename(&temporary, &path)
            });
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "failed to cache compiled component");
        }
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let digest = digest.trim_start_matches("sha256:");
        Some(dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish())))
    }

    /// Runs `messages` through one new instance of `worker` and returns its
    /// outcomes, or the fault that stopped it, along with what it did.
    pub async fn run_batch(
        &self,
        worker: &PreparedWorker,
        messages: &[ReservedMessage],
        mut scope: BatchScope,
        limits: InstanceLimits,
    ) -> BatchRun {
        let started = Instant::now();
        scope.attempts = messages
            .iter()
            .map(|message| (message.id.clone(), message.attempt))
            .collect::<HashMap<_, _>>();

        let stdout = CapturedOutput::new(OUTPUT_CAPACITY);
        let stderr = CapturedOutput::new(OUTPUT_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = WorkerState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory),
            scope,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);

        let deadline = started + limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            // tokio's yield_now lets the worker thread run its timers and I/O
            // before it polls this task again. A plain self-wake can keep a
            // busy guest in tokio's LIFO slot, so the batch's reservation
            // touch timer stops firing while the guest spins.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });

        let batch: Vec<bindings::types::Message> = messages.iter().map(to_wit_message).collect();
        let call = async {
            let instance = worker
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|error| Fault::Instantiate(format!("{error:#}")))?;
            instance
                .call_handle_batch(&mut store, &batch)
                .await
                .map_err(|error| classify_error(&error, limits.deadline))
        };
        // The epoch deadline only fires while guest code runs. A host call
        // that hangs (a stalled gateway, say) is cut off here instead.
        let grace = Duration::from_secs(1);
        let result = match tokio::time::timeout(limits.deadline + grace, call).await {
            Ok(Ok(outcomes)) if outcomes.len() == messages.len() => {
                Ok(outcomes.into_iter().map(WorkerOutcome::from).collect())
            }
            Ok(Ok(outcomes)) => Err(Fault::OutcomeCount {
                expected: messages.len(),
                actual: outcomes.len(),
            }),
            Ok(Err(fault)) => Err(fault),
            Err(_) => Err(Fault::Deadline(limits.deadline)),
        };

        let state = store.into_data();
        let result = match result {
            Err(Fault::Trap(message)) if state.limiter.refused() => Err(Fault::Trap(format!(
                "{message} (a memory allocation was refused at the limit of {} MiB)",
                limits.memory / (1024 * 1024)
            ))),
            other => other,
        };
        let (stdout, stdout_dropped) = stdout.take();
        let (stderr, stderr_dropped) = stderr.take();
        BatchRun {
            result,
            scope: state.scope,
            stdout,
            stderr,
            dropped_output: stdout_dropped + stderr_dropped,
            elapsed: started.elapsed(),
        }
    }
}

/// Checks the 8-byte header: `\0asm`, then a version and layer. A core module
/// has version 1, layer 0, and a component has version 0x0d, layer 1.
fn check_header(bytes: &[u8]) -> Result<(), UploadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(UploadError::NotWasm);
    }
    match bytes[4..8] {
        [0x01, 0x00, 0x00, 0x00] => Err(UploadError::CoreModule),
        [_, _, 0x01, 0x00] => Ok(()),
        ref other => Err(UploadError::UnknownVersion(hex::encode(other))),
    }
}

fn classify_error(error: &wasmtime::Error, deadline: Duration) -> Fault {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::Deadline(deadline),
        Some(trap) => Fault::Trap(format!("{trap}")),
        None => Fault::Trap(format!("{error:#}")),
    }
}

fn to_wit_message(message: &ReservedMessage) -> bindings::types::Message {
    bindings::types::Message {
        id: message.id.clone(),
        queue: message.queue.clone(),
        payload: message.payload.clone(),
        attempt: message.attempt,
        enqueued_at: crate::clock::to_rfc3339(message.enqueued_at),
    }
}

impl From<bindings::types::Outcome> for WorkerOutcome {
    fn from(outcome: bindings::types::Outcome) -> Self {
        use bindings::types::Outcome;
        match outcome {
            Outcome::Done => Self::Done,
            Outcome::Retry(retry) => Self::Retry {
                error: retry.error,
                delay: retry
                    .delay_seconds
                    .map(|seconds| Duration::from_secs(seconds.into())),
            },
            Outcome::Fail(reason) => Self::Fail(reason),
            Outcome::Defer(seconds) => Self::Defer(Duration::from_secs(seconds.into())),
        }
    }
}

/// Starts a thread that advances the engine's epoch every [`EPOCH_TICK`]
/// and stops once the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("herald-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "failed to start the epoch thread, so deadlines will not be enforced");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn key_locks_serialize_same_key_only() {
        let locks = KeyLocks::default();
        let first = locks.lock("a").await;

        let other = tokio::time::timeout(Duration::from_millis(50), locks.lock("b")).await;
        assert!(other.is_ok(), "a different key waited");
        let same = tokio::time::timeout(Duration::from_millis(50), locks.lock("a")).await;
        assert!(same.is_err(), "the same key did not wait");

        drop(first);
        let again = tokio::time::timeout(Duration::from_millis(50), locks.lock("a")).await;
        assert!(again.is_ok(), "the key stayed locked after release");
    }

    #[test]
    fn header_check_tells_formats_apart() {
        assert!(matches!(check_header(b""), Err(UploadError::NotWasm)));
        assert!(matches!(
            check_header(b"hello, world"),
            Err(UploadError::NotWasm)
        ));
        assert!(matches!(
            check_header(&[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]),
            Err(UploadError::CoreModule)
        ));
        assert!(check_header(&[0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]).is_ok());
        assert!(matches!(
            check_header(&[0, 0x61, 0x73, 0x6d, 2, 0, 0, 0]),
            Err(UploadError::UnknownVersion(_))
        ));
    }
}
