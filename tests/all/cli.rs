//! The command line: `herald run`, config errors, and the client commands
//! against a running server.

use std::process::Command;
use std::time::Duration;

use crate::support::herald::{HERALD, write_file};
use crate::support::{Herald, mail, workers};

#[test]
fn run_sends_through_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("welcome_email.wasm");
    std::fs::write(&worker, workers::welcome_email()).unwrap();
    let payload = write_file(
        dir.path(),
        "payload.json",
        r#"{"email": "ada@example.com", "name": "Ada", "token": "abc123"}"#,
    );

    let output = Command::new(HERALD)
        .arg("run")
        .arg(&worker)
        .arg("--payload")
        .arg(&payload)
        .current_dir(dir.path())
        .output()
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("completed"), "{stdout}");
    assert!(
        stdout.contains("sent email to ada@example.com via email"),
        "{stdout}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("herald-outbox"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    let email = mail::parse(&std::fs::read(files[0].path()).unwrap());
    assert_eq!(email.subject, "Welcome to Example, Ada");
    assert!(
        email
            .text
            .unwrap()
            .contains("https://example.com/verify?token=abc123")
    );
}

#[test]
fn run_reports_failed_message() {
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("welcome_email.wasm");
    std::fs::write(&worker, workers::welcome_email()).unwrap();
    let payload = write_file(
        dir.path(),
        "payload.json",
        r#"[{"email": "ada@example.com"}]"#,
    );

    let output = Command::new(HERALD)
        .arg("run")
        .arg(&worker)
        .arg("--payload")
        .arg(&payload)
        .current_dir(dir.path())
        .output()
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("dead: invalid payload: missing field `name`"),
        "{stdout}"
    );
}

#[test]
fn run_rejects_core_module() {
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("core.wasm");
    std::fs::write(&worker, [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]).unwrap();
    let payload = write_file(dir.path(), "payload.json", "{}");

    let output = Command::new(HERALD)
        .arg("run")
        .arg(&worker)
        .arg("--payload")
        .arg(&payload)
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("core WebAssembly module"), "{stderr}");
}

#[test]
fn invalid_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("listne = \"127.0.0.1:0\"\n", "listne"),
        (
            "[gateways.email]\nkind = \"smtp\"\nurl = \"http://x\"\nfrom = \"a@b.c\"\n",
            "scheme \"http\"",
        ),
        (
            "[gateways.email]\nkind = \"smtp\"\nurl = \"smtp://127.0.0.1:1\"\nfrom = \"not an address\"\n",
            "\"not an address\"",
        ),
        (
            "[gateways.email]\nkind = \"smtp\"\nurl = \"smtp://127.0.0.1:1\"\nfrom = \"a@b.c\"\nuser_env = \"HERALD_TEST_UNSET_USER\"\npassword_env = \"HERALD_TEST_UNSET_PASSWORD\"\n",
            "HERALD_TEST_UNSET_USER",
        ),
        ("[workers.x]\nbatch_size = 0\n", "workers.x.batch_size is 0"),
    ];
    for (text, expected) in cases {
        let config = write_file(
            dir.path(),
            "herald.toml",
            &format!("listen = \"127.0.0.1:0\"\n{text}"),
        );
        let output = Command::new(HERALD)
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text} was accepted");
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
}

#[test]
fn missing_config_file_is_reported() {
    let output = Command::new(HERALD)
        .args(["serve", "--config", "/nonexistent/herald.toml"])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/herald.toml"), "{stderr}");
}

#[tokio::test]
async fn client_commands_deploy_enqueue_and_list() {
    let herald = Herald::start("");
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("welcome_email.wasm");
    std::fs::write(&worker, workers::welcome_email()).unwrap();
    let herald_cli = |args: &[&str]| {
        let output = Command::new(HERALD)
            .args(args)
            .env("HERALD_URL", &herald.base_url)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "herald {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };

    let deployed = herald_cli(&["deploy", "welcome-email", worker.to_str().unwrap()]);
    assert!(
        deployed.contains("deployed welcome-email version 1"),
        "{deployed}"
    );
    let enqueued = herald_cli(&[
        "enqueue",
        "welcome-email",
        "--payload",
        r#"{"email": "ada@example.com", "name": "Ada", "token": "t1"}"#,
    ]);
    let id = enqueued.trim().to_owned();
    herald
        .wait_for_state(&[id], "completed", Duration::from_secs(30))
        .await;
    let listed = herald_cli(&["deliveries"]);
    assert!(listed.contains("ada@example.com"), "{listed}");
    assert!(listed.contains("sent"), "{listed}");
}

#[tokio::test]
async fn second_server_on_same_address_touches_nothing() {
    let config = "[workers.test-worker]\nconcurrency = 1\nbatch_size = 1\n";
    let herald = Herald::start(config);
    herald.deploy("test-worker", workers::test_worker()).await;
    let payloads = vec![serde_json::json!({"action": "sleep", "ms": 100}); 20];
    let ids = herald.enqueue("test-worker", &payloads).await;
    let address = herald.base_url.trim_start_matches("http://").to_owned();
    let text = std::fs::read_to_string(herald.config_path())
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{address}\""),
        );
    let second_config = write_file(herald.dir.path(), "second.toml", &text);

    let output = Command::new(HERALD)
        .args(["serve", "--config"])
        .arg(&second_config)
        .current_dir(herald.dir.path())
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("failed to listen on {address}")),
        "{stderr}"
    );
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(60))
        .await;
    for id in &ids {
        let message = herald.message(id).await;
        assert_eq!(
            message["attempts"], 1,
            "the failed server reserved {id}: {message}"
        );
    }
}

#[test]
fn run_renders_stored_template_and_writes_other_channels() {
    let dir = tempfile::tempdir().unwrap();
    let digest = dir.path().join("daily_digest.wasm");
    std::fs::write(&digest, workers::daily_digest()).unwrap();
    let sms = dir.path().join("sms_alert.wasm");
    std::fs::write(&sms, workers::sms_alert()).unwrap();
    let template = dir.path().join("template.json");
    std::fs::write(&template, workers::daily_digest_template()).unwrap();
    let digest_payload = write_file(
        dir.path(),
        "digest.json",
        r#"{"date": "2026-12-04", "users": [
            {"email": "ada@example.com", "name": "Ada",
             "items": [{"title": "Release 1.2", "url": "https://example.com/r"}]}]}"#,
    );
    let sms_payload = write_file(
        dir.path(),
        "sms.json",
        r#"{"phone": "+14155550123", "text": "db-1: disk 91% full"}"#,
    );

    let run = |worker: &std::path::Path, payload: &std::path::Path, extra: &[String]| {
        let output = Command::new(HERALD)
            .arg("run")
            .arg(worker)
            .arg("--payload")
            .arg(payload)
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        stdout
    };
    let template_arg = format!("daily-digest={}", template.display());
    let stdout = run(
        &digest,
        &digest_payload,
        &["--template".into(), template_arg],
    );
    assert!(stdout.contains("completed"), "{stdout}");
    let stdout = run(&sms, &sms_payload, &[]);
    assert!(stdout.contains("completed"), "{stdout}");

    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("herald-outbox"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let eml = names.iter().find(|name| name.ends_with(".eml")).unwrap();
    let email = mail::parse(&std::fs::read(dir.path().join("herald-outbox").join(eml)).unwrap());
    assert_eq!(email.subject, "Your digest for 2026-12-04: 1 new item");
    let sms_file = names
        .iter()
        .find(|name| name.ends_with(".sms.json"))
        .unwrap();
    let sent: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("herald-outbox").join(sms_file)).unwrap(),
    )
    .unwrap();
    assert_eq!(sent["to"], "+14155550123");
    assert_eq!(sent["body"], "db-1: disk 91% full");
}

#[test]
fn run_rejects_malformed_template_flag() {
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("daily_digest.wasm");
    std::fs::write(&worker, workers::daily_digest()).unwrap();
    let payload = write_file(
        dir.path(),
        "payload.json",
        r#"{"date": "2026-12-04", "users": []}"#,
    );

    let output = Command::new(HERALD)
        .args(["run"])
        .arg(&worker)
        .arg("--payload")
        .arg(&payload)
        .args(["--template", "daily-digest"])
        .current_dir(dir.path())
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NAME=FILE"), "{stderr}");
}
