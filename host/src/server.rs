//! Wiring of one `herald serve` process: opening the store, setting up the
//! gateways and the runtime, loading the deployed workers, and serving the
//! API until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Semaphore;

use crate::audit::AuditLog;
use crate::config::{API_TOKEN_ENV, Config};
use crate::dispatch::Dispatcher;
use crate::gateway::Gateways;
use crate::queue::Queue;
use crate::runtime::{HostServices, Runtime, UploadError};
use crate::store::{Db, StoreError};
use crate::template::TemplateStore;
use crate::workers::{self, Added, WorkerStore};

/// Maximum number of uploads compiled at once. Compilation uses every core,
/// so more in parallel only adds memory.
const CONCURRENT_COMPILES: usize = 2;

/// The running parts of a Herald process, shared by the API handlers.
pub struct App {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// The queue.
    pub queue: Queue,
    /// The delivery log.
    pub audit: AuditLog,
    /// Configured gateways, shared with the workers' host calls.
    pub gateways: Gateways,
    /// Stored worker versions.
    pub workers: WorkerStore,
    /// Stored templates, shared with the workers' host calls.
    pub templates: TemplateStore,
    /// The WebAssembly runtime.
    pub runtime: Arc<Runtime>,
    /// The dispatcher.
    pub dispatcher: Dispatcher,
    /// Bearer token required on `/v1`, if any.
    pub api_token: Option<String>,
    compiles: Semaphore,
}

/// Failure of an upload.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The component was rejected.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Compilation panicked or was cancelled.
    #[error("compilation task failed: {0}")]
    Task(String),
}

impl App {
    /// Opens the store under the data directory, sets up gateways and the
    /// runtime, and starts every deployed worker.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "failed to create data directory \"{}\"",
                config.data_dir.display()
            )
        })?;
        let db = Db::open(&config.database_path())?;
        let queue = Queue::new(
            db.clone(),
            Duration::from_secs(config.queue.idempotency_window_secs),
        );
        let audit = AuditLog::new(db.clone());
        let templates = TemplateStore::new(db.clone());
        let gateways = Gateways::from_config(&config)?;
        let runtime = Arc::new(Runtime::new(
            &config.runtime,
            Some(config.data_dir.join("compiled")),
        )?);
        let services = Arc::new(HostServices {
            gateways: gateways.clone(),
            audit: audit.clone(),
            queue: queue.clone(),
            send_locks: Default::default(),
            templates: templates.clone(),
        });
        let dispatcher = Dispatcher::new(Arc::clone(&runtime), services, Arc::clone(&config));
        let api_token = std::env::var(API_TOKEN_ENV)
            .ok()
            .filter(|token| !token.is_empty());

        let app = Self {
            config,
            queue,
            audit,
            gateways,
            workers: WorkerStore::new(db),
            templates,
            runtime,
            dispatcher,
            api_token,
            compiles: Semaphore::new(CONCURRENT_COMPILES),
        };
        app.start_deployed_workers().await?;
        Ok(app)
    }

    async fn start_deployed_workers(&self) -> anyhow::Result<()> {
        for version in self.workers.list_active().await? {
            let Some((version, bytes)) = self.workers.active(version.name.clone()).await? else {
                continue;
            };
            let runtime = Arc::clone(&self.runtime);
            let (name, number, digest) = (version.name.clone(), version.version, version.digest);
            let prepared = tokio::task::spawn_blocking(move || {
                runtime.prepare(&name, number, &digest, &bytes)
            })
            .await?;
            match prepared {
                Ok(prepared) => self.dispatcher.deploy(prepared),
                Err(error) => {
                    tracing::error!(worker = %version.name, version = version.version, %error, "failed to load deployed worker; upload it again");
                }
            }
        }
        Ok(())
    }

    /// Validates, compiles and stores `bytes` as the next version of `name`,
    /// then switches the worker's loop to it. Nothing is stored when the
    /// component is rejected.
    pub async fn deploy(&self, name: String, bytes: Vec<u8>) -> Result<Added, DeployError> {
        let digest = workers::digest(&bytes);
        let bytes = Arc::new(bytes);
        let prepared = {
            let _permit = self
                .compiles
                .acquire()
                .await
                .map_err(|error| DeployError::Task(error.to_string()))?;
            let runtime = Arc::clone(&self.runtime);
            let (name, digest, bytes) = (name.clone(), digest.clone(), Arc::clone(&bytes));
            tokio::task::spawn_blocking(move || runtime.prepare(&name, 0, &digest, &bytes))
                .await
                .map_err(|error| DeployError::Task(error.to_string()))??
        };

        let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        let added = self.workers.add_version(name, bytes).await?;
        if added.created {
            let mut prepared = prepared;
            prepared.version = added.version.version;
            self.dispatcher.deploy(prepared);
            tracing::info!(
                worker = %added.version.name,
                version = added.version.version,
                digest = %added.version.digest,
                "deployed worker"
            );
        }
        Ok(added)
    }
}

/// Runs `herald serve`: starts the app, serves the API on `config.listen`
/// until SIGTERM or Ctrl-C, then shuts the dispatcher down gracefully.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let token_set = std::env::var(API_TOKEN_ENV).is_ok_and(|token| !token.is_empty());
    if !token_set && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {} without authentication; set {API_TOKEN_ENV} or listen on a \
             loopback address such as 127.0.0.1",
            config.listen
        );
    }

    let grace = Duration::from_secs(config.queue.shutdown_grace_secs);
    let listen = config.listen;
    // Bind before anything starts reserving, so that a second process on the
    // same config fails without touching the queue.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    let app = Arc::new(App::start(config).await?);
    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(%address, data_dir = %app.config.data_dir.display(), auth = token_set, "herald listening");
    // Scripts and tests read the bound address from this line.
    println!("herald listening on http://{address}");

    // One signal starts both the HTTP drain and the dispatcher's shutdown,
    // so reserving stops at once rather than after the last HTTP client.
    let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        signalled.send_replace(true);
    });
    let dispatcher_app = Arc::clone(&app);
    let mut dispatcher_signal = on_signal.clone();
    let dispatcher_shutdown = tokio::spawn(async move {
        let _ = dispatcher_signal.wait_for(|signalled| *signalled).await;
        dispatcher_app.dispatcher.shutdown(grace).await;
    });

    let router = crate::api::router(Arc::clone(&app));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = on_signal.wait_for(|signalled| *signalled).await;
        })
        .await
        .context("HTTP server failed")?;
    tracing::info!("HTTP server stopped");

    dispatcher_shutdown.await?;
    tracing::info!("herald stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "failed to listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}
