//! The SMTP gateway's transports: STARTTLS with authentication, implicit TLS,
//! and a clear failure when STARTTLS is required but not offered.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::support::smtp::SmtpOptions;
use crate::support::{Herald, SmtpServer, mail, workers};

/// A self-signed certificate for `localhost`, written as PEM files.
struct TestCertificate {
    _dir: tempfile::TempDir,
    cert_path: PathBuf,
    key_path: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn certificate() -> TestCertificate {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();
    TestCertificate {
        _dir: dir,
        cert_path,
        key_path,
        cert_pem,
        key_pem,
    }
}

fn send_payload(to: &str) -> serde_json::Value {
    json!({
        "action": "send",
        "email": {"to": to, "subject": "over tls", "text": "hello"},
    })
}

#[tokio::test]
async fn starttls_with_auth_delivers() {
    let certificate = certificate();
    let smtp = SmtpServer::start_with(SmtpOptions {
        tls: Some((
            certificate.cert_path.display().to_string(),
            certificate.key_path.display().to_string(),
        )),
        credentials: Some(("herald".to_owned(), "pa55word".to_owned())),
        ..SmtpOptions::default()
    });
    let config = format!(
        "[gateways.email]\nkind = \"smtp\"\nurl = \"smtp://localhost:{}?tls=required\"\n\
         from = \"noreply@example.com\"\nuser_env = \"TEST_SMTP_USER\"\n\
         password_env = \"TEST_SMTP_PASSWORD\"\nca_file = \"{}\"\n",
        smtp.addr.port(),
        certificate.cert_path.display()
    );
    let herald = Herald::start_with_env(
        &config,
        &[
            ("TEST_SMTP_USER", "herald"),
            ("TEST_SMTP_PASSWORD", "pa55word"),
        ],
    );
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_payload("ada@example.com")])
        .await;
    let received = smtp.wait_for(1, Duration::from_secs(30));

    assert_eq!(received[0].authenticated_user.as_deref(), Some("herald"));
    assert_eq!(mail::parse(&received[0].data).subject, "over tls");
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(10))
        .await;
    assert!(
        !herald.logs().contains("pa55word"),
        "the SMTP password reached the log"
    );
}

/// Accepts TLS on a free port and forwards the plaintext to `upstream`.
async fn start_tls_terminator(certificate: &TestCertificate, upstream: SocketAddr) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = vec![CertificateDer::from_pem_slice(certificate.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let certificate = certificate();
    let smtp = SmtpServer::start();
    let tls_addr = start_tls_terminator(&certificate, smtp.addr).await;
    let config = format!(
        "[gateways.email]\nkind = \"smtp\"\nurl = \"smtps://localhost:{}\"\n\
         from = \"noreply@example.com\"\nca_file = \"{}\"\n",
        tls_addr.port(),
        certificate.cert_path.display()
    );
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_payload("bob@example.com")])
        .await;
    let received = tokio::task::spawn_blocking(move || smtp.wait_for(1, Duration::from_secs(30)))
        .await
        .unwrap();

    assert_eq!(received[0].to, ["bob@example.com"]);
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn untrusted_certificate_is_not_used() {
    let certificate = certificate();
    let smtp = SmtpServer::start();
    let tls_addr = start_tls_terminator(&certificate, smtp.addr).await;
    let config = format!(
        "[gateways.email]\nkind = \"smtp\"\nurl = \"smtps://localhost:{}\"\nfrom = \"noreply@example.com\"\n\
         [workers.test-worker]\nmax_attempts = 1\n",
        tls_addr.port()
    );
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_payload("eve@example.com")])
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("TLS handshake failed"), "{error}");
    assert_eq!(smtp.count(), 0);
}

#[tokio::test]
async fn required_starttls_missing_is_reported() {
    let smtp = SmtpServer::start();
    let config = format!(
        "[gateways.email]\nkind = \"smtp\"\nurl = \"smtp://127.0.0.1:{}?tls=required\"\n\
         from = \"noreply@example.com\"\n[workers.test-worker]\nmax_attempts = 1\n",
        smtp.addr.port()
    );
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_payload("eve@example.com")])
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("does not offer STARTTLS"), "{error}");
    assert_eq!(smtp.count(), 0);
}

#[tokio::test]
async fn rejected_recipient_is_permanent() {
    let smtp = SmtpServer::start_with(SmtpOptions {
        reject_prefix: Some(("nobody".to_owned(), 550)),
        ..SmtpOptions::default()
    });
    let herald = Herald::start(&crate::support::smtp_gateway(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_payload("nobody@example.com")])
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 1, "a 550 was retried: {message}");
    let rows = herald.deliveries("recipient=nobody@example.com").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "dead");
    assert!(
        rows[0]["error"].as_str().unwrap().contains("550"),
        "{}",
        rows[0]
    );
}
