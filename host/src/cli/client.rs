//! `herald deploy`, `enqueue` and `deliveries`: thin HTTP clients of a
//! running server.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{DEFAULT_SERVER, printable};
use crate::config::API_TOKEN_ENV;

/// Server address. The bearer token comes from `HERALD_API_TOKEN`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the server.
    #[arg(long, env = "HERALD_URL", default_value = DEFAULT_SERVER)]
    server: String,
}

/// Filters of `herald deliveries`.
pub struct DeliveryQuery {
    pub worker: Option<String>,
    pub recipient: Option<String>,
    pub status: Option<String>,
    pub limit: u32,
}

fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> reqwest::RequestBuilder {
    let builder = client.request(method, url);
    match std::env::var(API_TOKEN_ENV) {
        Ok(token) if !token.is_empty() => builder.bearer_auth(token),
        _ => builder,
    }
}

/// Sends a request and returns the JSON body, or an error with the server's
/// message.
async fn send(builder: reqwest::RequestBuilder, server: &str) -> anyhow::Result<Value> {
    let response = builder.send().await.with_context(|| {
        format!("failed to reach the server at {server}; is `herald serve` running?")
    })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    anyhow::bail!("server returned {status}: {message}")
}

pub async fn deploy(server: &ServerArgs, name: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = tokio::fs::read(file)
        .await
        .with_context(|| format!("failed to read \"{}\"", file.display()))?;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/workers/{name}", server.server.trim_end_matches('/'));
    let body = send(
        request(&client, reqwest::Method::PUT, url)
            .header("content-type", "application/wasm")
            .body(bytes),
        &server.server,
    )
    .await?;
    println!(
        "deployed {} version {} ({})",
        body["name"].as_str().unwrap_or(name),
        body["version"],
        body["digest"].as_str().unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn enqueue(
    server: &ServerArgs,
    queue: &str,
    payloads: Vec<String>,
    file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let lines: Vec<(String, String)> = match file {
        Some(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("failed to read \"{}\"", path.display()))?;
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(index, line)| (format!("{}:{}", path.display(), index + 1), line.to_owned()))
                .collect()
        }
        None => payloads
            .into_iter()
            .enumerate()
            .map(|(index, payload)| (format!("--payload #{}", index + 1), payload))
            .collect(),
    };
    let mut messages = Vec::with_capacity(lines.len());
    for (origin, line) in lines {
        let payload: Value =
            serde_json::from_str(&line).with_context(|| format!("{origin} is not valid JSON"))?;
        messages.push(json!({ "payload": payload }));
    }

    let client = reqwest::Client::new();
    let url = format!(
        "{}/v1/queues/{queue}/messages",
        server.server.trim_end_matches('/')
    );
    let mut count = 0;
    for chunk in messages.chunks(1_000) {
        let body = send(
            request(&client, reqwest::Method::POST, url.clone())
                .json(&json!({ "messages": chunk })),
            &server.server,
        )
        .await?;
        for id in body["ids"].as_array().into_iter().flatten() {
            println!("{}", id.as_str().unwrap_or_default());
            count += 1;
        }
    }
    eprintln!("enqueued {count} messages on {queue}");
    Ok(ExitCode::SUCCESS)
}

pub async fn deliveries(server: &ServerArgs, query: &DeliveryQuery) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/deliveries", server.server.trim_end_matches('/'));
    let mut parameters = vec![("limit", query.limit.to_string())];
    for (key, value) in [
        ("worker", &query.worker),
        ("recipient", &query.recipient),
        ("status", &query.status),
    ] {
        if let Some(value) = value {
            parameters.push((key, value.clone()));
        }
    }
    let body = send(
        request(&client, reqwest::Method::GET, url).query(&parameters),
        &server.server,
    )
    .await?;
    let rows = body["deliveries"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no deliveries");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24}  {:<20}  {:<14}  {:<28}  provider id",
        "time", "worker", "status", "recipient"
    );
    for row in rows {
        let field = |name: &str| printable(row[name].as_str().unwrap_or_default());
        println!(
            "{:<24}  {:<20}  {:<14}  {:<28}  {}",
            field("created_at"),
            format!("{}@{}", field("worker"), row["worker_version"]),
            field("status"),
            field("recipient"),
            field("provider_id"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
