//! The dispatcher: one loop per worker that reserves batches from the queue of
//! the same name and runs them, at most `concurrency` at a time per worker
//! and `runtime.max_instances` across all workers.
//!
//! The loop waits for an enqueue on its queue, the next due message or the
//! poll interval, whichever comes first. On shutdown it stops reserving, lets
//! running batches finish within a grace period, then releases what they
//! still hold so another process can take it at once.

mod batch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

pub use batch::{BatchContext, BatchReport};

use crate::clock;
use crate::config::Config;
use crate::queue::{ReserveParams, ReservedMessage};
use crate::runtime::{HostServices, PreparedWorker, Runtime};

/// Runs every deployed worker's loop.
pub struct Dispatcher {
    shared: Arc<Shared>,
    loops: Mutex<HashMap<String, WorkerLoop>>,
    /// The failure-webhook sender.
    notices: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    runtime: Arc<Runtime>,
    services: Arc<HostServices>,
    config: Arc<Config>,
    /// One permit per instance the pooling allocator has room for.
    instances: Arc<Semaphore>,
    /// Becomes true when shutdown begins.
    stopping: watch::Sender<bool>,
    /// Batches in flight, by reservation id.
    in_flight: Mutex<HashMap<String, JoinHandle<()>>>,
}

struct WorkerLoop {
    version: watch::Sender<Arc<PreparedWorker>>,
    task: JoinHandle<()>,
}

impl Dispatcher {
    /// Creates a dispatcher with no workers yet.
    pub fn new(runtime: Arc<Runtime>, services: Arc<HostServices>, config: Arc<Config>) -> Self {
        let instances = Arc::new(Semaphore::new(config.runtime.max_instances as usize));
        let (stopping, _) = watch::channel(false);
        let notices = tokio::spawn(crate::webhook::run_sender(
            services.queue.clone(),
            Arc::clone(&config),
            stopping.subscribe(),
        ));
        tokio::spawn(delete_old_messages(
            services.queue.clone(),
            Duration::from_secs(config.queue.completed_retention_secs),
            stopping.subscribe(),
        ));
        Self {
            shared: Arc::new(Shared {
                runtime,
                services,
                config,
                instances,
                stopping,
                in_flight: Mutex::new(HashMap::new()),
            }),
            loops: Mutex::new(HashMap::new()),
            notices: Mutex::new(Some(notices)),
        }
    }

    /// Starts consuming the queue named after `worker` with it, or switches a
    /// running loop to this version for its next batches.
    pub fn deploy(&self, worker: PreparedWorker) {
        let worker = Arc::new(worker);
        let mut loops = self
            .loops
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(running) = loops.get(&worker.name)
            && !running.task.is_finished()
        {
            // Two uploads may finish compiling out of order. The higher
            // version, which the store made active, wins.
            let current = running.version.borrow().version;
            if worker.version < current {
                tracing::info!(worker = %worker.name, version = worker.version, current, "ignored deploy of an older version");
                return;
            }
            tracing::info!(worker = %worker.name, version = worker.version, "switched worker to new version");
            running.version.send_replace(worker);
            return;
        }
        tracing::info!(worker = %worker.name, version = worker.version, "started worker");
        let name = worker.name.clone();
        let (version, receiver) = watch::channel(worker);
        let task = tokio::spawn(worker_loop(
            Arc::clone(&self.shared),
            name.clone(),
            receiver,
        ));
        loops.insert(name, WorkerLoop { version, task });
    }

    /// Stops reserving, waits up to `grace` for running batches, then aborts
    /// the rest and releases their messages with the attempt they spent
    /// given back.
    pub async fn shutdown(&self, grace: Duration) {
        tracing::info!("dispatcher stopping, no new batches will be reserved");
        self.shared.stopping.send_replace(true);
        let loops: Vec<JoinHandle<()>> = self
            .loops
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .drain()
            .map(|(_, worker_loop)| worker_loop.task)
            .collect();
        for task in loops {
            let _ = task.await;
        }

        let running = self.shared.in_flight_count();
        if running > 0 {
            tracing::info!(
                running,
                grace_secs = grace.as_secs_f64(),
                "waiting for running batches"
            );
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.in_flight_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The webhook sender stops after the POST it is making. A receiver
        // that hangs past the grace period is cut off, and its notice is sent
        // again once the reservation expires.
        let notices = self
            .notices
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if let Some(mut notices) = notices
            && tokio::time::timeout_at(deadline, &mut notices)
                .await
                .is_err()
        {
            tracing::info!(
                "failure webhook still in flight at the end of the grace period, stopping it"
            );
            notices.abort();
        }

        let leftover: Vec<(String, JoinHandle<()>)> = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .drain()
            .collect();
        for (reservation_id, task) in leftover {
            task.abort();
            let _ = task.await;
            match self
                .shared
                .services
                .queue
                .release(reservation_id.clone())
                .await
            {
                Ok(released) => {
                    tracing::info!(reservation = %reservation_id, released, "released messages of an unfinished batch")
                }
                Err(error) => {
                    tracing::error!(reservation = %reservation_id, %error, "failed to release messages, they return when the reservation expires")
                }
            }
        }
        tracing::info!("dispatcher stopped");
    }
}

impl Shared {
    fn in_flight_count(&self) -> usize {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        in_flight.retain(|_, task| !task.is_finished());
        in_flight.len()
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }
}

async fn worker_loop(
    shared: Arc<Shared>,
    name: String,
    mut version: watch::Receiver<Arc<PreparedWorker>>,
) {
    let binding = Arc::new(shared.config.binding(&name));
    let concurrency = Arc::new(Semaphore::new(binding.concurrency as usize));
    let wakeup = shared.services.queue.subscribe(&name);
    let poll = Duration::from_millis(shared.config.queue.poll_interval_ms.max(10));
    let mut stopping = shared.stopping.subscribe();

    loop {
        if shared.is_stopping() {
            break;
        }
        let permits = tokio::select! {
            permits = acquire_permits(&concurrency, &shared.instances) => permits,
            _ = stopping.changed() => break,
        };
        let Some(permits) = permits else { break };

        let reserved = match reserve_batch(&shared, &name, &binding, &wakeup).await {
            Ok(reserved) => reserved,
            Err(error) => {
                tracing::error!(worker = %name, %error, "failed to reserve messages");
                drop(permits);
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        let Some((reservation_id, messages)) = reserved else {
            drop(permits);
            let wait = next_wait(&shared, &name, poll).await;
            tokio::select! {
                () = wakeup.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stopping.changed() => break,
                _ = version.changed() => {}
            }
            continue;
        };

        let context = BatchContext {
            runtime: Arc::clone(&shared.runtime),
            services: Arc::clone(&shared.services),
            worker: Arc::clone(&version.borrow()),
            binding: Arc::clone(&binding),
            reservation_id: reservation_id.clone(),
        };
        spawn_batch(&shared, context, messages, permits);
    }
    tracing::info!(worker = %name, "worker loop stopped");
}

/// Deletes completed messages older than `retention`, a thousand at a time,
/// and enqueue idempotency keys past their window, once a minute, until
/// shutdown.
async fn delete_old_messages(
    queue: crate::queue::Queue,
    retention: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopping.changed() => return,
        }
        let cutoff = clock::now_ms() - retention.as_millis() as i64;
        loop {
            match queue.delete_completed(cutoff, 1_000).await {
                Ok(0) => break,
                Ok(deleted) => tracing::info!(deleted, "deleted completed messages past retention"),
                Err(error) => {
                    tracing::warn!(%error, "failed to delete old completed messages");
                    break;
                }
            }
        }
        match queue.delete_expired_keys().await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "deleted expired idempotency keys"),
            Err(error) => tracing::warn!(%error, "failed to delete expired idempotency keys"),
        }
    }
}

/// Takes one permit from the worker's concurrency limit and one from the
/// global instance limit.
async fn acquire_permits(
    concurrency: &Arc<Semaphore>,
    instances: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let worker = Arc::clone(concurrency).acquire_owned().await.ok()?;
    let global = Arc::clone(instances).acquire_owned().await.ok()?;
    Some((worker, global))
}

/// Reserves up to a batch of messages. When the batch is not full and the
/// binding has a batch wait, it keeps adding to the same reservation until
/// the batch is full or the wait is over. Returns `None` when nothing was due.
async fn reserve_batch(
    shared: &Shared,
    name: &str,
    binding: &crate::config::Binding,
    wakeup: &tokio::sync::Notify,
) -> Result<Option<(String, Vec<ReservedMessage>)>, crate::store::StoreError> {
    let queue = &shared.services.queue;
    let mut params = ReserveParams {
        queue: name.to_owned(),
        limit: binding.batch_size,
        timeout: binding.reservation_timeout,
        max_attempts: binding.max_attempts,
        dead_letters: binding.dead_letter_policy(name),
        reservation_id: None,
    };
    let reservation = queue.reserve(params.clone()).await?;
    let mut messages = reservation.messages;
    if messages.is_empty() {
        return Ok(None);
    }

    let fill_until = tokio::time::Instant::now() + binding.batch_wait;
    while messages.len() < binding.batch_size as usize
        && tokio::time::Instant::now() < fill_until
        && !shared.is_stopping()
    {
        tokio::select! {
            () = wakeup.notified() => {}
            () = tokio::time::sleep_until(fill_until) => {}
        }
        params.limit = binding.batch_size - messages.len() as u32;
        params.reservation_id = Some(reservation.id.clone());
        let more = queue.reserve(params.clone()).await?;
        messages.extend(more.messages);
    }
    Ok(Some((reservation.id, messages)))
}

/// Returns how long an idle loop sleeps: until the next message is due or
/// a reservation expires, at most `poll`.
async fn next_wait(shared: &Shared, name: &str, poll: Duration) -> Duration {
    match shared.services.queue.next_due(name.to_owned()).await {
        Ok(Some(due)) => {
            let wait_ms = (due - clock::now_ms()).clamp(0, poll.as_millis() as i64);
            Duration::from_millis(wait_ms as u64 + 1)
        }
        Ok(None) => poll,
        Err(error) => {
            tracing::warn!(worker = %name, %error, "failed to read the next due time");
            poll
        }
    }
}

fn spawn_batch(
    shared: &Arc<Shared>,
    context: BatchContext,
    messages: Vec<ReservedMessage>,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) {
    let reservation_id = context.reservation_id.clone();
    let shared_for_task = Arc::clone(shared);
    let mut in_flight = shared
        .in_flight
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let key = reservation_id.clone();
    let task = tokio::spawn(async move {
        let count = messages.len();
        let report = context.process(messages).await;
        drop(permits);
        tracing::info!(
            worker = %context.worker.name,
            version = context.worker.version,
            reservation = %reservation_id,
            messages = count,
            completed = report.completed,
            rescheduled = report.rescheduled,
            dead = report.dead.len(),
            runs = report.runs,
            "batch finished"
        );
        shared_for_task
            .in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&reservation_id);
    });
    in_flight.insert(key, task);
}
