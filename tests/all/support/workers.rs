//! Guest components built from this repository, once per test process:
//! `sample-workers/` and the purpose-built workers under `tests/workers/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Returns the repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned()
}

/// Returns the bytes of `sample-workers/welcome-email`.
pub fn welcome_email() -> Vec<u8> {
    read(&build("sample-workers/Cargo.toml").join("welcome_email.wasm"))
}

/// Returns the bytes of `sample-workers/sms-alert`, which texts an alert
/// through the gateway `sms`.
pub fn sms_alert() -> Vec<u8> {
    read(&build("sample-workers/Cargo.toml").join("sms_alert.wasm"))
}

/// Returns the bytes of `sample-workers/push-notify`, which sends a push
/// notification through the gateway `push`.
pub fn push_notify() -> Vec<u8> {
    read(&build("sample-workers/Cargo.toml").join("push_notify.wasm"))
}

/// Returns the bytes of `sample-workers/webhook-relay`, which relays an
/// event through the gateway `webhook`.
pub fn webhook_relay() -> Vec<u8> {
    read(&build("sample-workers/Cargo.toml").join("webhook_relay.wasm"))
}

/// Returns the bytes of `sample-workers/daily-digest`, which emails each
/// user a digest through the gateway `email`, rendered from the stored
/// template `daily-digest`.
pub fn daily_digest() -> Vec<u8> {
    read(&build("sample-workers/Cargo.toml").join("daily_digest.wasm"))
}

/// Returns the body of `PUT /v1/templates/daily-digest` that
/// [`daily_digest`] renders: `sample-workers/daily-digest/template.json`.
pub fn daily_digest_template() -> Vec<u8> {
    read(&repo_root().join("sample-workers/daily-digest/template.json"))
}

/// Returns the bytes of `tests/workers/test-worker`, whose behaviour each
/// payload picks with its `action` field.
pub fn test_worker() -> Vec<u8> {
    read(&build("tests/workers/Cargo.toml").join("test_worker.wasm"))
}

/// Returns the bytes of `tests/workers/no-export`, a component that does not
/// export `handle-batch`.
pub fn no_export() -> Vec<u8> {
    read(&build("tests/workers/Cargo.toml").join("no_export.wasm"))
}

/// Builds the guest workspace `manifest` (relative to the repository root)
/// for wasm32-wasip2 in release mode, once per process, and returns the
/// folder with the `.wasm` files.
pub fn build(manifest: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let root = repo_root();
    let target_dir = root.join("target/guest");
    let output_dir = target_dir.join("wasm32-wasip2/release");

    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built.lock().unwrap_or_else(|poison| poison.into_inner());
    if built.iter().any(|done| done == manifest) {
        return output_dir;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root.join(manifest))
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .expect("run cargo to build guest workers");
    assert!(
        output.status.success(),
        "building {manifest} for wasm32-wasip2 failed (is the target installed? \
         rustup target add wasm32-wasip2):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    built.push(manifest.to_owned());
    output_dir
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}
