//! The Rust client (`jiva-client`) against the real server: connecting, sending, reconnecting
//! across a server restart on the same port and data.

mod node_kill;
mod resume_load;
mod tls;
mod v0;
mod v1;

use std::net::SocketAddr;

use jiva_client::{ChatKind, Client, Config, Event, Events, Protocol};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{Backing, PATIENCE, StoreKind};

/// A server that can be stopped and started again on the same address and data, as a restart
/// of the process would.
pub struct Restartable {
    pub addr: SocketAddr,
    backing: Backing,
    _dir: tempfile::TempDir,
    tweak: fn(&mut jivachat_server::Config),
    /// Native TLS: the certificate and key files (read again at every start).
    tls: Option<jiva_ws::TlsFiles>,
    running: Option<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
}

impl Restartable {
    /// A server on a fresh embedded store, on a free loopback port.
    pub async fn start(tweak: fn(&mut jivachat_server::Config)) -> Self {
        Self::start_tls(tweak, None).await
    }

    /// [`Self::start`], serving `wss://` from `tls` when given.
    pub async fn start_tls(
        tweak: fn(&mut jivachat_server::Config),
        tls: Option<jiva_ws::TlsFiles>,
    ) -> Self {
        let (backing, dir) = Backing::fresh(StoreKind::Sqlite).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut server = Self {
            addr: listener.local_addr().unwrap(),
            backing,
            _dir: dir,
            tweak,
            tls,
            running: None,
        };
        server.run_on(listener).await;
        server
    }

    async fn run_on(&mut self, listener: TcpListener) {
        let data_dir = match &self.backing {
            Backing::Sqlite(dir) => dir.clone(),
            Backing::Dynamo(_) => unreachable!("embedded store only"),
        };
        let mut config = jivachat_server::Config::with_data_dir(data_dir);
        (self.tweak)(&mut config);
        config.tls = self.tls.clone();
        let store = self.backing.store(&config).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(jivachat_server::run_with_store(
            config,
            store,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        self.running = Some((stop, task));
    }

    /// Stops the server as SIGTERM would and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            tokio::time::timeout(PATIENCE * 3, task)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }

    /// Starts the server again on the same address and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.run_on(listener).await;
    }

    /// `ws://` and the address, or with TLS `wss://localhost` (the certificate's name).
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("ws://{}/", self.addr),
            Some(_) => format!("wss://localhost:{}/", self.addr.port()),
        }
    }

    /// A client configuration for `agent`'s supervisor chat, reconnecting quickly.
    pub fn config(&self, agent: &str, protocol: Protocol) -> Config {
        let mut config = Config::new(self.url(), agent, ChatKind::Supervisor);
        config.protocol = protocol;
        config.reconnect.initial = std::time::Duration::from_millis(20);
        config.reconnect.max = std::time::Duration::from_millis(500);
        config
    }

    pub async fn connect(&self, agent: &str, protocol: Protocol) -> (Client, Events) {
        tokio::time::timeout(PATIENCE, Client::connect(self.config(agent, protocol)))
            .await
            .expect("connect timed out")
            .unwrap()
    }
}

/// The next event that `pick` keeps (others skipped), within the patience.
pub async fn next_matching<T>(events: &mut Events, pick: impl FnMut(Event) -> Option<T>) -> T {
    tokio::time::timeout(PATIENCE, events.next_matching(pick))
        .await
        .expect("no such event in time")
        .expect("the client ended")
}
