//! `PUT /v1/workers/{name}`: accepted components, rejected uploads, and that
//! a rejected upload stores nothing.

use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::support::{Herald, workers};

#[tokio::test]
async fn upload_returns_version_and_digest() {
    let herald = Herald::start("");
    let bytes = workers::welcome_email();
    let expected_digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));

    let (status, body) = herald.upload("welcome-email", bytes.clone()).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "welcome-email");
    assert_eq!(body["version"], 1);
    assert_eq!(body["digest"], expected_digest.as_str());

    let (status, again) = herald.upload("welcome-email", bytes).await;
    assert_eq!(status, StatusCode::OK, "identical upload: {again}");
    assert_eq!(again["version"], 1);

    let (status, list) = herald.get("/v1/workers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["workers"][0]["name"], "welcome-email");
    assert_eq!(list["workers"][0]["version"], 1);
}

#[tokio::test]
async fn new_bytes_make_new_version() {
    let herald = Herald::start("");
    herald.deploy("mailer", workers::welcome_email()).await;

    let (status, body) = herald.upload("mailer", workers::test_worker()).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 2);
}

/// Uploads `bytes` and asserts the status, the error code and that the
/// message contains `expected`.
async fn assert_rejected(
    herald: &Herald,
    bytes: Vec<u8>,
    status: StatusCode,
    code: &str,
    expected: &str,
) {
    let (actual, body) = herald.upload("broken", bytes).await;
    assert_eq!(actual, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(expected),
        "message {message:?} lacks {expected:?}"
    );
}

#[tokio::test]
async fn bad_uploads_are_rejected_and_nothing_stored() {
    let herald = Herald::start("");
    let core_module = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut truncated = workers::welcome_email();
    truncated.truncate(truncated.len() / 2);

    assert_rejected(
        &herald,
        core_module,
        StatusCode::BAD_REQUEST,
        "invalid_component",
        "core WebAssembly module",
    )
    .await;
    assert_rejected(
        &herald,
        random,
        StatusCode::BAD_REQUEST,
        "invalid_component",
        "not a WebAssembly binary",
    )
    .await;
    assert_rejected(
        &herald,
        Vec::new(),
        StatusCode::BAD_REQUEST,
        "invalid_component",
        "empty",
    )
    .await;
    assert_rejected(
        &herald,
        truncated,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_component",
        "invalid",
    )
    .await;
    assert_rejected(
        &herald,
        workers::no_export(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "wrong_world",
        "handle-batch",
    )
    .await;

    let (_, list) = herald.get("/v1/workers").await;
    assert_eq!(
        list["workers"],
        serde_json::json!([]),
        "a rejected upload was stored"
    );
    let compiled = herald.data_dir().join("compiled");
    let cached: Vec<_> = std::fs::read_dir(&compiled)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert!(cached.is_empty(), "a rejected upload left {cached:?}");
}

#[tokio::test]
async fn invalid_worker_name_is_rejected() {
    let herald = Herald::start("");

    let (status, body) = herald.upload("bad%20name", workers::welcome_email()).await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_name");
}

#[tokio::test]
async fn deployed_worker_survives_restart() {
    let mut herald = Herald::start("");
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;

    herald.restart();

    let (_, list) = herald.get("/v1/workers").await;
    assert_eq!(list["workers"][0]["name"], "welcome-email");
    let ids = herald
        .enqueue(
            "welcome-email",
            &[serde_json::json!({"email": "ada@example.com", "name": "Ada", "token": "t"})],
        )
        .await;
    herald
        .wait_for_state(&ids, "completed", std::time::Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn oversized_upload_names_the_limit() {
    let herald = Herald::start("[api]\nmax_upload_bytes = 1024\n");

    let (status, body) = herald
        .upload("welcome-email", workers::welcome_email())
        .await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("1024 bytes"), "{message}");
    assert!(message.contains("api.max_upload_bytes"), "{message}");
}
