//! The accept loop behind [`crate::serve`] and [`crate::serve_tls`]: one task per connection,
//! the TLS handshake (when configured) within [`crate::HANDSHAKE_TIMEOUT`], HTTP/1.1 with
//! upgrades by hyper, the peer address as axum's `ConnectInfo` (for the per-IP limits), and
//! request headers within [`crate::Limits::request_header_timeout`], so that a connection that
//! never sends a request does not hold a task forever. On shutdown it stops accepting, asks each
//! connection to finish gracefully, closes every socket with 1001 and waits within the grace.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::Transport;
use crate::tls::HANDSHAKE_TIMEOUT;

/// Serves `transport` on `listener` (over TLS when `tls` is given) until `shutdown` completes.
pub(crate) async fn serve_connections<F>(
    listener: TcpListener,
    transport: Transport,
    tls: Option<TlsAcceptor>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let stop = transport.shutdown_token();
    let header_timeout = transport.request_header_timeout();
    // One router for every connection; each request gets its peer address as an extension
    // (a per-connection `Router::layer` would rebuild every route, the fallback and the path
    // matcher on every accept).
    let router = TowerToHyperService::new(transport.router());
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            () = stop.cancelled() => break,
        };
        no_delay(&tcp, peer);
        let app = router.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let Some(acceptor) = tls else {
                return serve_http(tcp, app, stop, header_timeout, peer).await;
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_http(stream, app, stop, header_timeout, peer).await,
                Ok(Err(e)) => {
                    metrics::counter!("jiva_tls_handshake_failures_total").increment(1);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    metrics::counter!("jiva_tls_handshake_failures_total").increment(1);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
    drop(listener);
    transport.begin_shutdown();
    connections.close();
    // One deadline for both waits: the grace is for the whole shutdown, not for each step.
    let connections_done =
        tokio::time::timeout_at(transport.shutdown_deadline(), connections.wait()).await;
    if connections_done.is_err() || !transport.drain().await {
        tracing::warn!("shutdown grace period ran out with sockets or copilot turns still open");
    }
    Ok(())
}

/// Turns Nagle's algorithm off on an accepted connection, so that frames go out as soon as they
/// are written: with it on, a small write that follows unacknowledged data waits for the peer's
/// ACK, which a client may delay by 40 ms (before this, a connect's replay of a long history
/// took 44 ms at the median, most of it that wait; Node's `ws` turns it off too).
fn no_delay(tcp: &tokio::net::TcpStream, peer: SocketAddr) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "setting TCP_NODELAY failed");
    }
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it ends or shutdown finishes it.
async fn serve_http<S>(
    stream: S,
    app: TowerToHyperService<Router>,
    stop: CancellationToken,
    header_timeout: Duration,
    peer: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    builder.header_read_timeout((!header_timeout.is_zero()).then_some(header_timeout));
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(peer));
        hyper::service::Service::call(&app, request)
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        if e.is_timeout() {
            metrics::counter!("jiva_request_header_timeouts_total").increment(1);
            tracing::debug!(%peer, "no request headers in time; connection closed");
        } else {
            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn an_accepted_connection_has_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        assert!(!tcp.nodelay().unwrap());
        super::no_delay(&tcp, peer);
        assert!(tcp.nodelay().unwrap());
    }
}
