//! The `herald` command line: `serve`, `run`, and small HTTP clients
//! (`deploy`, `enqueue`, `deliveries`) for a running server.

mod client;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Default server address of the client commands.
const DEFAULT_SERVER: &str = "http://127.0.0.1:7600";

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Host runtime for notification workers compiled to WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server: the HTTP API, the queue and the dispatcher.
    Serve {
        /// Config file (TOML). Without it, Herald listens on 127.0.0.1:7600,
        /// keeps its data in ./herald-data and writes emails to an outbox.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Runs one batch of a worker locally and prints each delivery. Every
    /// gateway name resolves to an outbox folder; no server is needed.
    Run {
        /// The worker component (.wasm built for wasm32-wasip2).
        worker: PathBuf,
        /// JSON file with the payload: an object for one message, or an array
        /// of payloads for a batch of several.
        #[arg(long)]
        payload: PathBuf,
        /// Folder that receives the emails as .eml files.
        #[arg(long, default_value = "herald-outbox")]
        outbox: PathBuf,
        /// Config file whose [workers.NAME] settings apply (limits, settings).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Worker name, for settings lookup and the delivery log. Defaults to
        /// the file name without extension.
        #[arg(long)]
        name: Option<String>,
        /// Stored template for the run, as NAME=FILE where FILE contains the
        /// JSON body of PUT /v1/templates/NAME. Repeat for several.
        #[arg(long = "template", value_name = "NAME=FILE")]
        templates: Vec<String>,
    },
    /// Uploads a component as the next version of a worker.
    Deploy {
        /// Worker name; it consumes the queue of the same name.
        name: String,
        /// The component (.wasm).
        file: PathBuf,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Enqueues messages on a queue.
    Enqueue {
        /// Queue name.
        queue: String,
        /// Payload as JSON text; repeat for several messages.
        #[arg(long, required_unless_present = "file")]
        payload: Vec<String>,
        /// File with one JSON payload per line.
        #[arg(long, conflicts_with = "payload")]
        file: Option<PathBuf>,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Lists the delivery log, newest first.
    Deliveries {
        /// Only this worker.
        #[arg(long)]
        worker: Option<String>,
        /// Only this recipient address.
        #[arg(long)]
        recipient: Option<String>,
        /// Only this status (sent, failed, retrying, dead, duplicate-suppressed).
        #[arg(long)]
        status: Option<String>,
        /// Maximum number of rows.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        server: client::ServerArgs,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // rustls needs one process-wide crypto provider when more than one is
    // compiled in; Herald uses ring everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            crate::server::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            worker,
            payload,
            outbox,
            config,
            name,
            templates,
        } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            run::run(run::RunArgs {
                worker,
                payload,
                outbox,
                config,
                name,
                templates,
            })
            .await
        }
        Command::Deploy { name, file, server } => client::deploy(&server, &name, &file).await,
        Command::Enqueue {
            queue,
            payload,
            file,
            server,
        } => client::enqueue(&server, &queue, payload, file.as_deref()).await,
        Command::Deliveries {
            worker,
            recipient,
            status,
            limit,
            server,
        } => {
            let query = client::DeliveryQuery {
                worker,
                recipient,
                status,
                limit,
            };
            client::deliveries(&server, &query).await
        }
    }
}

/// Escapes control characters, so that text from the delivery log (which may
/// hold a worker's invalid input verbatim) cannot move the cursor or clear the
/// operator's terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|character| match character.is_control() {
            true => character.escape_default().to_string(),
            false => character.to_string(),
        })
        .collect()
}

/// Logs to stderr; `HERALD_LOG` (or `RUST_LOG`) sets the filter.
fn init_logging() {
    let filter = std::env::var("HERALD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!("warning: invalid log filter \"{filter}\" ({error}); using \"info\"");
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(
            printable("\u{1b}[2Jada@example.com\r\n"),
            "\\u{1b}[2Jada@example.com\\r\\n"
        );
        assert_eq!(printable("Zoë"), "Zoë");
    }
}
