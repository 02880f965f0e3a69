//! Native TLS (`wss://`) with a test CA made here, certificate reloads, and the admin listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{Connector, MaybeTlsStream};

use crate::metrics::{ServerProcess, get};
use crate::support::*;

/// A certificate authority the test clients trust.
pub(crate) struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
    /// The CA certificate in PEM, for clients that take roots as PEM.
    pub(crate) pem: String,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "JivaChat test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (der, pem) = (cert.der().clone(), cert.pem());
        Self {
            params,
            key,
            der,
            pem,
        }
    }

    /// A leaf certificate for `localhost` named `name`: (certificate PEM, key PEM, DER).
    pub(crate) fn leaf(
        &self,
        name: &str,
        serial: u64,
    ) -> (String, String, CertificateDer<'static>) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.serial_number = Some(serial.into());
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    /// A client connector trusting only this CA (ring provider given explicitly).
    fn connector(&self) -> Connector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Connector::Rustls(Arc::new(config))
    }
}

/// Writes `text` to `path` at once (through a renamed temporary file), as deployment tools do.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The certificate and key files of `leaf` in `dir`.
pub(crate) fn write_pair(
    dir: &Path,
    leaf: &(String, String, CertificateDer<'static>),
) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    replace_file(&key, &leaf.1);
    replace_file(&cert, &leaf.0);
    (cert, key)
}

/// Stops a server started in the test and waits for it to return without error.
async fn stop_serving<E: std::fmt::Debug>(
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), E>>,
) {
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A `wss://` client of the supervisor chat, and the leaf certificate the server presented.
async fn connect_wss(addr: SocketAddr, ca: &TestCa) -> (Ws, CertificateDer<'static>) {
    let url = format!(
        "wss://localhost:{}/?agentID={AGENT}&secondaryID=supervisor",
        addr.port()
    );
    let connecting = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tokio_tungstenite::client_async_tls_with_config(url, tcp, None, Some(ca.connector())).await
    };
    let (ws, response) = tokio::time::timeout(PATIENCE, connecting)
        .await
        .expect("wss connect timed out")
        .unwrap();
    assert_eq!(response.status(), 101);
    let presented = match ws.get_ref() {
        MaybeTlsStream::Rustls(tls) => tls.get_ref().1.peer_certificates().unwrap()[0].clone(),
        _ => panic!("not a TLS stream"),
    };
    (ws, presented)
}

/// Connects until the server presents `expected` (it reloads on its own schedule).
async fn await_certificate(addr: SocketAddr, ca: &TestCa, expected: &CertificateDer<'static>) {
    let wait = async {
        loop {
            let (mut ws, presented) = connect_wss(addr, ca).await;
            let _ = ws.close(None).await;
            if &presented == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("the new certificate was never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_clients_chat_and_a_certificate_swapped_on_disk_is_served_to_the_next_client() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.leaf("first", 1);
    let (cert, key) = write_pair(dir.path(), &first);
    let server = TestServer::start_with(|c| {
        c.tls = Some(jiva_ws::TlsFiles {
            cert,
            key,
            poll: Some(Duration::from_millis(100)),
        });
    })
    .await;

    let (mut a, presented) = connect_wss(server.addr, &ca).await;
    assert_eq!(presented, first.2);
    let (mut b, _) = connect_wss(server.addr, &ca).await;
    say(&mut a, "agent", "over TLS").await;
    assert_eq!(next_json(&mut a).await["message"], "over TLS");
    assert_eq!(next_json(&mut b).await["message"], "over TLS");

    let second = ca.leaf("second", 2);
    write_pair(dir.path(), &second);
    await_certificate(server.addr, &ca, &second.2).await;

    // Sockets opened before the swap go on, and shutdown still closes them with 1001.
    say(&mut b, "supervisor", "after the swap").await;
    assert_eq!(next_json(&mut a).await["message"], "after the swap");
    assert_eq!(next_json(&mut b).await["message"], "after the swap");
    let stopping = tokio::spawn(server.stop());
    for ws in [&mut a, &mut b] {
        expect_close(ws, CloseCode::Away).await;
    }
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_failed_reload_keeps_the_certificate_in_use() {
    let metrics = jivachat_server::telemetry::handle().unwrap();
    let failed_before = crate::metrics::sample(
        &metrics.render(),
        r#"jiva_tls_reloads_total{outcome="failed"}"#,
    )
    .unwrap_or(0.0);
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.leaf("first", 1);
    let (cert, key) = write_pair(dir.path(), &first);
    let tls = jiva_ws::Tls::load(jiva_ws::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        poll: None,
    })
    .unwrap();
    // A certificate with someone else's key, then a file that is not PEM at all.
    let other = ca.leaf("other", 3);
    replace_file(&key, &other.1);
    assert!(matches!(tls.reload(), Err(jiva_ws::TlsError::Key(_))));
    replace_file(&cert, "not a certificate");
    assert!(tls.reload().is_err());
    // Other tests of this process may count failures too (the swap test can catch a
    // certificate without its key), never fewer.
    let failed = crate::metrics::sample(
        &metrics.render(),
        r#"jiva_tls_reloads_total{outcome="failed"}"#,
    )
    .unwrap();
    assert!(
        failed >= failed_before + 2.0,
        "{failed} after {failed_before}"
    );

    let data = tempfile::tempdir().unwrap();
    let config = jivachat_server::Config::with_data_dir(data.path());
    let store = jivachat_server::open_store(&config).await.unwrap();
    let transport = jiva_ws::Transport::new(config.transport, jiva_ws::Services::new(store));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(jiva_ws::serve_tls(listener, transport, tls, async move {
        let _ = stopped.await;
    }));
    let (_ws, presented) = connect_wss(addr, &ca).await;
    assert_eq!(presented, first.2);
    stop_serving(stop, serving).await;
}

/// The real binary reloads on SIGHUP (file polling off), and refuses to start on a key that
/// does not fit the certificate.
#[tokio::test]
async fn the_binary_reloads_the_certificate_on_sighup() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.leaf("first", 1);
    let (cert, key) = write_pair(dir.path(), &first);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = ServerProcess::start_with(&[
        ("JIVA_TLS_CERT", cert),
        ("JIVA_TLS_KEY", key),
        ("JIVA_TLS_RELOAD_SECS", "0"),
    ]);
    let (_ws, presented) = connect_wss(server.addr, &ca).await;
    assert_eq!(presented, first.2);
    let second = ca.leaf("second", 2);
    write_pair(dir.path(), &second);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    await_certificate(server.addr, &ca, &second.2).await;

    let mismatched = ca.leaf("mismatched", 4);
    replace_file(Path::new(key), &mismatched.1);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_jivachat-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("configuration error: --tls-cert / --tls-key: the key does not fit"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_admin_listener_serves_metrics_and_the_main_listener_no_longer_does() {
    let data = tempfile::tempdir().unwrap();
    let config = jivachat_server::Config::with_data_dir(data.path());
    let store = jivachat_server::open_store(&config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(jivachat_server::run_with_listeners(
        config,
        store,
        listener,
        Some(admin),
        async move {
            let _ = stopped.await;
        },
    ));
    let (status, _, text) = get(admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("jiva_sockets_open"), "{text}");
    let (status, _, _) = get(main_addr, "/metrics").await;
    assert_eq!(status, 404);
    for addr in [main_addr, admin_addr] {
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 200);
    }
    // The admin listener serves no chat.
    let (status, _) = raw_http(
        admin_addr,
        &upgrade_request("/?agentID=a&secondaryID=supervisor"),
    )
    .await;
    assert_eq!(status, 404);
    stop_serving(stop, serving).await;
}
