//! The real `herald` binary as a child process, with its own data directory
//! and config, and a small HTTP client for its API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

/// Path of the binary under test.
pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// A running `herald serve`. Killed on drop; its log is printed when the
/// test is failing.
pub struct Herald {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Folder with `herald.toml`, the data directory and the log.
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    token: Option<String>,
    client: reqwest::Client,
    starts: u32,
}

impl Herald {
    /// Starts `herald serve` with `config` appended to a listen address on a
    /// free loopback port and a data directory in a new temporary folder.
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    /// Like [`Herald::start`], with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let text = format!("listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{config}\n");
        std::fs::write(dir.path().join("herald.toml"), text).expect("write herald.toml");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let token = env
            .iter()
            .find(|(key, _)| key == "HERALD_API_TOKEN")
            .map(|(_, value)| value.clone());
        let mut herald = Self {
            child: None,
            base_url: String::new(),
            dir,
            env,
            token,
            client: reqwest::Client::new(),
            starts: 0,
        };
        herald.spawn();
        herald
    }

    /// Returns the config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("herald.toml")
    }

    /// Returns the data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("herald-{start}.log"))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("create log file");
        let mut command = Command::new(HERALD);
        command
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env("HERALD_LOG", "info,herald=debug")
            .env_remove("HERALD_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn herald");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("herald listening on ") {
                    let _ = sender.send(url.to_owned());
                }
            }
        });
        self.child = Some(child);
        match receiver.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => self.base_url = url,
            Err(_) => panic!(
                "herald did not start listening within 120 s; its log:\n{}",
                self.logs()
            ),
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit;
    /// returns its exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for herald") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "herald did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same config and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Returns every log line written so far, across restarts.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|start| {
                let text = std::fs::read_to_string(self.log_path(start)).unwrap_or_default();
                format!("--- start {start} ---\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a request and returns the status and the JSON body (`Null`
    /// when the body is not JSON).
    pub async fn send(&self, builder: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = builder.send().await.expect("send request to herald");
        let status = response.status();
        let body = response.bytes().await.expect("read response body");
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, value)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// Returns a request builder with this server's token, for custom
    /// requests.
    pub fn builder(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request(method, path)
    }

    /// `PUT /v1/workers/{name}` with `bytes`.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let builder = self
            .request(reqwest::Method::PUT, &format!("/v1/workers/{name}"))
            .body(bytes);
        self.send(builder).await
    }

    /// Uploads a worker and asserts that it was accepted.
    pub async fn deploy(&self, name: &str, bytes: Vec<u8>) -> Value {
        let (status, body) = self.upload(name, bytes).await;
        assert!(
            status.is_success(),
            "upload of {name} failed: {status} {body}"
        );
        body
    }

    /// Enqueues one message per payload on `queue` and returns their ids.
    pub async fn enqueue(&self, queue: &str, payloads: &[Value]) -> Vec<String> {
        let messages: Vec<Value> = payloads
            .iter()
            .map(|payload| json!({ "payload": payload }))
            .collect();
        self.enqueue_raw(queue, json!({ "messages": messages }))
            .await
    }

    /// Posts an enqueue request body as given and returns the ids.
    pub async fn enqueue_raw(&self, queue: &str, body: Value) -> Vec<String> {
        let builder = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/queues/{queue}/messages"),
            )
            .json(&body);
        let (status, body) = self.send(builder).await;
        assert_eq!(status, StatusCode::ACCEPTED, "enqueue failed: {body}");
        body["ids"]
            .as_array()
            .expect("ids array")
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }

    /// Returns `GET /v1/messages/{id}`.
    pub async fn message(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(status, StatusCode::OK, "get message {id}: {body}");
        body
    }

    /// Returns delivery rows for a query string such as `status=sent`.
    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/deliveries?{query}")).await;
        assert_eq!(status, StatusCode::OK, "list deliveries: {body}");
        body["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until every message in `ids` is in `state`; panics after
    /// `timeout` naming the first one that is not.
    pub async fn wait_for_state(&self, ids: &[String], state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<&String> = ids.iter().collect();
        while let Some(id) = pending.last() {
            let message = self.message(id).await;
            if message["state"] == state {
                pending.pop();
                continue;
            }
            if Instant::now() > deadline {
                panic!(
                    "message {id} is {} not {state} after {timeout:?} ({} others pending): {message}",
                    message["state"],
                    pending.len() - 1
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns the number of messages of `queue` in each state.
    pub async fn counts(&self, queue: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/queues/{queue}")).await;
        assert_eq!(status, StatusCode::OK, "queue counts: {body}");
        body["counts"].clone()
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "herald log ({}):\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
    }
}

/// Writes `text` to `name` inside `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}
