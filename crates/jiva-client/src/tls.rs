//! `wss://`: the TLS connector built from the trust the caller gives, and the dial of one
//! connection (TCP, then TLS when the URL says `wss://`).
//!
//! There are no built-in roots (no web PKI, no system store) and no mode that accepts any
//! certificate: a `wss://` endpoint is trusted only through [`Config::tls_roots_pem`] or
//! [`Config::tls_config`]. The crypto provider is rustls' `ring` provider, given explicitly,
//! as the server's TLS does.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_util::either::Either;

use crate::{ClientError, Config};

/// A connection's byte stream: plain TCP (`ws://`) or TLS over TCP (`wss://`).
pub(crate) type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// Opens the byte streams of a client's connections.
#[derive(Clone)]
pub(crate) struct Dialer {
    /// Built once from the configuration; `None` when it gives no trust (then `wss://` is
    /// refused by [`Config::validate`] before any dial).
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The root certificates in the PEM texts `pems`, or one problem per text that holds none or
/// cannot be read.
pub(crate) fn roots_from_pem(pems: &[String]) -> Result<RootCertStore, Vec<String>> {
    let mut roots = RootCertStore::empty();
    let mut problems = Vec::new();
    for (i, pem) in pems.iter().enumerate() {
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
        match certs {
            Ok(certs) if certs.is_empty() => {
                problems.push(format!("tls_roots_pem[{i}] holds no certificate"));
            }
            Ok(certs) => {
                for cert in certs {
                    if let Err(e) = roots.add(cert) {
                        problems.push(format!("tls_roots_pem[{i}]: unusable certificate: {e}"));
                    }
                }
            }
            Err(e) => problems.push(format!("tls_roots_pem[{i}] is not PEM: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(roots)
    } else {
        Err(problems)
    }
}

impl Dialer {
    /// The dialer of `config` (checked by [`Config::validate`] first).
    pub(crate) fn new(config: &Config) -> Result<Self, ClientError> {
        let tls = match (&config.tls_config, config.tls_roots_pem.is_empty()) {
            (Some(given), _) => Some(TlsConnector::from(Arc::clone(given))),
            (None, true) => None,
            (None, false) => {
                let roots = roots_from_pem(&config.tls_roots_pem)
                    .map_err(|problems| ClientError::InvalidConfig(problems.join("; ")))?;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let built = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ClientError::InvalidConfig(format!("tls: {e}")))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(TlsConnector::from(Arc::new(built)))
            }
        };
        Ok(Self { tls })
    }

    /// Connects to the host of `uri` (`ws://` or `wss://`; port 80 or 443 when not given) and,
    /// for `wss://`, completes the TLS handshake, checking the server's certificate against
    /// the trust given and the URL's host name.
    pub(crate) async fn dial(&self, uri: &Uri) -> Result<Stream, ClientError> {
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => {
                return Err(ClientError::InvalidConfig(
                    "url must be ws:// or wss://".into(),
                ));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| ClientError::InvalidConfig("url has no host".into()))?;
        // An IPv6 literal comes bracketed in a URL.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| ClientError::Connection(Box::new(e)))?;
        // Nagle's algorithm off, as on the server: a small frame is sent at once instead of
        // waiting for the ACK of the previous one, which the peer may delay by 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "jiva-client: TCP_NODELAY not set");
        }
        if !secure {
            return Ok(Either::Left(tcp));
        }
        let Some(tls) = &self.tls else {
            return Err(ClientError::InvalidConfig(
                "wss:// needs tls_roots_pem or tls_config".into(),
            ));
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| ClientError::InvalidConfig(format!("url host for TLS: {e}")))?;
        match tls.connect(name, tcp).await {
            Ok(stream) => Ok(Either::Right(stream)),
            Err(e) => Err(handshake_error(e)),
        }
    }
}

/// A failed TLS handshake: refused by rustls (the certificate, the name, the protocol: a
/// [`ClientError::Tls`], which retrying will not change) or cut by the network (transient).
fn handshake_error(e: std::io::Error) -> ClientError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(refused) => ClientError::Tls(refused.clone()),
        None => ClientError::Connection(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_a_certificate_is_reported_per_entry() {
        let problems = roots_from_pem(&["".into(), "not pem at all".into()]).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("tls_roots_pem[0]"), "{problems:?}");
        assert!(problems[1].starts_with("tls_roots_pem[1]"), "{problems:?}");
    }

    #[tokio::test]
    async fn a_plain_connection_has_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = Config::new(
            format!("ws://127.0.0.1:{port}/"),
            "5f0c6d52-8a4e-4c1b-9d3e-2b7a1f6e8c90",
            crate::ChatKind::Copilot,
        );
        let dialer = Dialer::new(&config).unwrap();
        let uri: Uri = config.url.parse().unwrap();
        let (dialed, _accepted) = tokio::join!(dialer.dial(&uri), listener.accept());
        match dialed.unwrap() {
            Either::Left(tcp) => assert!(tcp.nodelay().unwrap(), "TCP_NODELAY is set"),
            Either::Right(_) => panic!("ws:// is not TLS"),
        }
    }

    #[test]
    fn a_rustls_refusal_is_a_tls_error_and_a_cut_is_transient() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = handshake_error(refused);
        assert!(matches!(e, ClientError::Tls(_)), "{e:?}");
        assert!(!e.is_transient());
        let cut = handshake_error(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(cut.is_transient(), "{cut:?}");
    }
}
