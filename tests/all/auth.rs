//! Bearer-token authentication of `/v1`, and the refusal to listen beyond
//! loopback without a token.

use std::process::Command;

use reqwest::StatusCode;

use crate::support::Herald;
use crate::support::herald::{HERALD, write_file};

#[tokio::test]
async fn token_is_required_when_set() {
    let herald = Herald::start_with_env("", &[("HERALD_API_TOKEN", "s3cret-token")]);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/workers", herald.base_url);

    let missing = client.get(&url).send().await.unwrap();
    let status = missing.status();
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing bearer token")
    );

    let wrong = client.get(&url).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let other_scheme = client
        .get(&url)
        .header("Authorization", "Basic czNjcmV0LXRva2Vu")
        .send()
        .await
        .unwrap();
    assert_eq!(other_scheme.status(), StatusCode::UNAUTHORIZED);

    let upload = client
        .put(format!("{}/v1/workers/x", herald.base_url))
        .body(vec![0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(
        upload.status(),
        StatusCode::UNAUTHORIZED,
        "upload without token"
    );

    let right = client
        .get(&url)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);

    let health = client
        .get(format!("{}/healthz", herald.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        !herald.logs().contains("s3cret-token"),
        "the token reached the log"
    );
}

#[test]
fn no_token_refuses_non_loopback_listen() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "herald.toml", "listen = \"0.0.0.0:0\"\n");

    let output = Command::new(HERALD)
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("HERALD_API_TOKEN")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HERALD_API_TOKEN"), "{stderr}");
    assert!(stderr.contains("0.0.0.0"), "{stderr}");
}
