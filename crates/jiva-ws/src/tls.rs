//! Native TLS (rustls) with certificates reloaded without a restart.
//!
//! The server config is built once with an explicit crypto provider (`ring`), so nothing
//! depends on a process-wide default provider (with both `ring` and `aws-lc-rs` in the
//! dependency tree, `ServerConfig::builder()` would panic). The certificate is chosen per
//! handshake by a resolver whose key pair [`Tls::reload`] swaps; a reload that fails keeps the
//! certificate in use. [`serve_tls`] serves through the same accept loop as plain serving
//! (`listen.rs`), with the TLS handshake within [`HANDSHAKE_TIMEOUT`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::server::Transport;

/// The longest a TLS handshake may take before its connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate chain and its private key are, and how often to look for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are compared; `None`: reload only when asked
    /// ([`Tls::reload`], on SIGHUP in the server binary).
    pub poll: Option<Duration>,
}

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the expected kind.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not usable or does not belong to the certificate.
    #[error("the key does not fit the certificate: {0}")]
    Key(#[source] rustls::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// A TLS server configuration whose certificate can be swapped while serving. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    files: Arc<TlsFiles>,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
    /// The files' modification times at the last load.
    seen: Arc<Mutex<Option<(SystemTime, SystemTime)>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn mtimes(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let cert = std::fs::metadata(&files.cert).and_then(|m| m.modified());
    let key = std::fs::metadata(&files.key).and_then(|m| m.modified());
    Some((cert.ok()?, key.ok()?))
}

fn load_key_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let pair = CertifiedKey::from_der(certs, key, provider).map_err(TlsError::Key)?;
    Ok(Arc::new(pair))
}

impl Tls {
    /// Loads and checks the certificate chain and key (both files must parse and match).
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = mtimes(&files);
        let pair = load_key_pair(&files, &provider)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(pair),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            files: Arc::new(files),
            provider,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            seen: Arc::new(Mutex::new(seen)),
        })
    }

    /// Reads the files again and serves the new certificate to the next handshakes. On
    /// failure the certificate in use stays and a warning is logged. Counted in
    /// `jiva_tls_reloads_total{outcome}`.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = mtimes(&self.files);
        match load_key_pair(&self.files, &self.provider) {
            Ok(pair) => {
                *self
                    .resolver
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = pair;
                metrics::counter!("jiva_tls_reloads_total", "outcome" => "ok").increment(1);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                metrics::counter!("jiva_tls_reloads_total", "outcome" => "failed").increment(1);
                tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the current one");
                Err(e)
            }
        }
    }

    /// Reloads when either file's modification time changed since the last load.
    fn reload_if_changed(&self) {
        let now = mtimes(&self.files);
        let changed =
            now.is_some() && *self.seen.lock().unwrap_or_else(PoisonError::into_inner) != now;
        if changed {
            // A failure is logged and counted by `reload`.
            let _ = self.reload();
        }
    }

    /// Polls the files every [`TlsFiles::poll`] until `stop` is cancelled.
    fn watch(&self, stop: CancellationToken) {
        let Some(every) = self.files.poll.filter(|p| !p.is_zero()) else {
            return;
        };
        let tls = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => tls.reload_if_changed(),
                    () = stop.cancelled() => return,
                }
            }
        });
    }
}

/// [`crate::serve`] over TLS: serves JivaChat on `listener` with `tls` until `shutdown`
/// completes, then closes every socket with 1001 and returns within the configured grace.
/// Watches the certificate files when [`TlsFiles::poll`] is set.
pub async fn serve_tls<F>(
    listener: TcpListener,
    transport: Transport,
    tls: Tls,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tls.watch(transport.shutdown_token());
    crate::listen::serve_connections(listener, transport, Some(tls.acceptor.clone()), shutdown)
        .await
}
