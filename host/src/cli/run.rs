//! `herald run`: one batch of a worker on local payloads, with every gateway
//! replaced by an outbox folder and the store kept in memory. It goes through
//! the same queue, runtime and dispatcher code as the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::audit::{AuditLog, DeliveryFilter};
use crate::clock;
use crate::config::{Config, RuntimeConfig};
use crate::dispatch::BatchContext;
use crate::gateway::Gateways;
use crate::gateway::outbox::OutboxGateway;
use crate::queue::{DeadLetterPolicy, MessageState, NewMessage, Queue, ReserveParams};
use crate::runtime::{HostServices, Runtime};
use crate::store::Db;
use crate::template::TemplateStore;
use crate::workers;

use super::printable;

/// Arguments of `herald run`.
pub struct RunArgs {
    pub worker: PathBuf,
    pub payload: PathBuf,
    pub outbox: PathBuf,
    pub config: Config,
    pub name: Option<String>,
    /// Templates to store before the run, as `NAME=FILE`.
    pub templates: Vec<String>,
}

/// Stores the template that `spec`, `NAME=FILE`, names.
async fn load_template(templates: &TemplateStore, spec: &str) -> anyhow::Result<()> {
    let Some((name, path)) = spec.split_once('=') else {
        anyhow::bail!(
            "invalid --template \"{spec}\"; write NAME=FILE, such as \
             daily-digest=sample-workers/daily-digest/template.json"
        );
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("failed to read template file \"{path}\""))?;
    let parts = serde_json::from_str(&text).with_context(|| {
        format!(
            "template file \"{path}\" is not a JSON object with \"subject\", \"text\" \
             and \"html\" strings"
        )
    })?;
    templates
        .put(name.to_owned(), parts)
        .await
        .with_context(|| format!("invalid template \"{name}\" in \"{path}\""))?;
    Ok(())
}

/// Runs the batch, prints each message's outcome and delivery, and returns
/// success only when every message completed.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let bytes = tokio::fs::read(&args.worker)
        .await
        .with_context(|| format!("failed to read worker \"{}\"", args.worker.display()))?;
    let payloads = read_payloads(&args.payload).await?;
    let name = match args.name {
        Some(name) => name,
        None => args
            .worker
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or("worker")
            .replace('_', "-"),
    };
    crate::queue::validate_queue_name(&name)
        .map_err(|message| anyhow::anyhow!("{message}; pass a valid --name"))?;
    let binding = args.config.binding(&name);

    let runtime = Arc::new(Runtime::new(&RuntimeConfig { max_instances: 4 }, None)?);
    let digest = workers::digest(&bytes);
    let prepared = {
        let runtime = Arc::clone(&runtime);
        let name = name.clone();
        tokio::task::spawn_blocking(move || runtime.prepare(&name, 1, &digest, &bytes)).await?
    }
    .with_context(|| format!("cannot run \"{}\"", args.worker.display()))?;

    let db = Db::open_in_memory()?;
    let queue = Queue::new(db.clone(), Duration::from_secs(60));
    let audit = AuditLog::new(db.clone());
    let outbox = OutboxGateway::new("outbox", args.outbox.clone(), "Herald <noreply@localhost>")?;
    let templates = TemplateStore::new(db);
    for spec in &args.templates {
        load_template(&templates, spec).await?;
    }
    let services = Arc::new(HostServices {
        gateways: Gateways::catch_all_outbox(outbox),
        audit: audit.clone(),
        queue: queue.clone(),
        send_locks: Default::default(),
        templates,
    });

    let now = clock::now_ms();
    let messages = payloads
        .iter()
        .map(|payload| NewMessage {
            payload: payload.to_string(),
            run_at: now,
            priority: 0,
            idempotency_key: None,
        })
        .collect();
    let enqueued = queue.enqueue(name.clone(), messages).await?;
    let reservation = queue
        .reserve(ReserveParams {
            queue: name.clone(),
            limit: u32::try_from(enqueued.len()).unwrap_or(u32::MAX),
            timeout: binding.reservation_timeout,
            max_attempts: binding.max_attempts,
            dead_letters: DeadLetterPolicy::default(),
            reservation_id: None,
        })
        .await?;

    let context = BatchContext {
        runtime,
        services,
        worker: Arc::new(prepared),
        binding: Arc::new(binding),
        reservation_id: reservation.id.clone(),
    };
    let report = context.process(reservation.messages).await;
    for fault in &report.faults {
        println!("fault: {}", printable(&fault.to_string()));
    }

    let mut all_completed = true;
    for entry in &enqueued {
        let Some(message) = queue.get(entry.id.clone()).await? else {
            continue;
        };
        all_completed &= message.state == MessageState::Completed;
        let detail = message
            .last_error
            .as_deref()
            .filter(|_| message.state != MessageState::Completed)
            .map(|error| format!(": {error}"))
            .unwrap_or_default();
        println!(
            "message {} {}{}",
            message.id,
            message.state.as_str(),
            printable(&detail)
        );

        let filter = DeliveryFilter {
            message_id: Some(message.id.clone()),
            limit: 1_000,
            ..DeliveryFilter::default()
        };
        let mut deliveries = audit.list(filter).await?;
        deliveries.reverse();
        for delivery in deliveries {
            let detail = delivery.error.or(delivery.provider_id).unwrap_or_default();
            println!(
                "  {} {} to {} via {}: {}",
                delivery.status,
                delivery.channel,
                printable(&delivery.recipient),
                delivery.gateway,
                printable(&detail)
            );
        }
    }
    println!("outbox: {}", args.outbox.display());
    Ok(if all_completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads the payload file: a JSON object is one message, an array is one
/// message per element.
async fn read_payloads(path: &std::path::Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("failed to read payload file \"{}\"", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("payload file \"{}\" is not valid JSON", path.display()))?;
    match value {
        serde_json::Value::Array(items) if items.is_empty() => anyhow::bail!(
            "payload file \"{}\" is an empty array; give at least one payload",
            path.display()
        ),
        serde_json::Value::Array(items) => Ok(items),
        other => Ok(vec![other]),
    }
}
