//! The JivaChat server: reads configuration, picks the adapters, and runs the transport.
//!
//! This is the only crate that names concrete adapters, reads the environment, or installs the
//! tracing subscriber. `main.rs` is four steps (config, tracing, bind, [`run`]); everything else
//! is here so that tests can start the real server on port 0 and stop it.

mod auth_config;
mod bus_config;
pub mod config;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use jiva_core::MessageStore;
use jiva_store_dynamo::DynamoStore;
use jiva_store_sqlite::SqliteStore;
use jiva_ws::{Services, Transport};
use tokio::net::TcpListener;

pub use auth_config::issue_token;
pub use bus_config::BusChoice;
pub use config::{Args, AuthChoice, Command, Config, LogFormat, StoreChoice, TokenArgs};

/// Installs the global tracing subscriber for `config` (once per process).
pub fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Opens the configured store.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn MessageStore>> {
    match &config.store {
        StoreChoice::Sqlite => {
            let store_config = jiva_store_sqlite::Config::in_dir(&config.data_dir);
            let path = store_config.path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(store_config))
                .await
                .context("opening the SQLite store")?
                .with_context(|| format!("opening the SQLite store at {}", path.display()))?;
            tracing::info!(store = "sqlite", path = %path.display(), "store ready");
            Ok(Arc::new(store))
        }
        StoreChoice::Dynamodb(dynamo) => {
            let store = DynamoStore::connect(dynamo.as_ref().clone()).await;
            tracing::info!(
                store = "dynamodb",
                chats = %dynamo.chats_table,
                messages = %dynamo.messages_table,
                legacy_index = ?dynamo.legacy_index,
                legacy_seq_index = ?dynamo.legacy_seq_index,
                "store ready"
            );
            Ok(Arc::new(store))
        }
    }
}

/// Creates the configured store's tables if they do not exist (the `create-tables` command).
pub async fn create_tables(config: &Config) -> anyhow::Result<()> {
    match &config.store {
        StoreChoice::Sqlite => {
            // Opening the embedded store creates its schema.
            open_store(config).await?;
            tracing::info!("the SQLite schema is in place");
        }
        StoreChoice::Dynamodb(dynamo) => {
            let store = DynamoStore::connect(dynamo.as_ref().clone()).await;
            let setup = store
                .create_tables()
                .await
                .context("creating the DynamoDB tables")?;
            tracing::info!(created = ?setup.created, existing = ?setup.existing, "DynamoDB tables ready");
        }
    }
    Ok(())
}

/// Runs the server on `listener` until `shutdown` completes, then closes every socket with 1001
/// and returns once sockets and copilot turns are done (within the configured grace).
pub async fn run<F>(config: Config, listener: TcpListener, shutdown: F) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let store = open_store(&config).await?;
    run_with_store(config, store, listener, shutdown).await
}

/// [`run`] with a store the caller opened (tests use it to put the server on a store of their
/// own, such as fresh DynamoDB tables).
pub async fn run_with_store<F>(
    config: Config,
    store: Arc<dyn MessageStore>,
    listener: TcpListener,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let admin = match config.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (admin)"))?,
        ),
        None => None,
    };
    run_with_listeners(config, store, listener, admin, shutdown).await
}

/// [`run_with_store`] with the admin listener already bound (tests bind it on port 0).
/// `/metrics` is then served there and not on `listener`.
pub async fn run_with_listeners<F>(
    mut config: Config,
    store: Arc<dyn MessageStore>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if admin.is_some() {
        config.transport.metrics_on_main_listener = false;
    }
    let tls = match &config.tls {
        Some(files) => {
            Some(jiva_ws::Tls::load(files.clone()).context("loading the TLS certificate")?)
        }
        None => None,
    };
    let mut services = Services::new(store);
    match &config.copilot {
        Some(copilot) => {
            let client = jiva_copilot::HttpCopilot::new(copilot.clone())
                .context("setting up the copilot client")?;
            tracing::info!(endpoint = ?copilot, "copilot configured");
            services = services.with_copilot(Arc::new(client));
        }
        None => tracing::info!(
            "copilot not configured (COPILOT_ENDPOINT unset): copilot questions get an error frame"
        ),
    }
    let notifications = match &config.notify {
        Some(notify) => {
            let queue = Arc::new(
                jiva_notify_amplify::start(notify.clone()).context("starting notifications")?,
            );
            services = services.with_notifier(queue.clone());
            Some(queue)
        }
        None => {
            tracing::info!("notifications not configured (GRAPHQL_API_URL unset)");
            None
        }
    };
    telemetry::watch_notifications(notifications.as_ref());
    services = services.with_authenticator(auth_config::authenticator(&config).await?);
    let bus = bus_config::connect(&config).await?;
    if let Some(bus) = &bus {
        services = services.with_bus(bus.clone()).with_turn_lock(bus.clone());
    }
    let transport = telemetry::expose(Transport::new(config.transport.clone(), services));
    if let Some(bus) = &bus {
        telemetry::watch_bus(bus.watch_connected());
    }
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    if matches!(config.auth, AuthChoice::None) && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "authentication is off (--auth none) on a non-loopback address: anyone who can reach it may open and write to any chat"
        );
    }
    if let Some(admin) = admin {
        let admin_addr = admin
            .local_addr()
            .context("reading the admin listener's address")?;
        tracing::info!(addr = %admin_addr, "admin listening (/metrics)");
        let admin_transport = transport.clone();
        tokio::spawn(async move {
            if let Err(e) = jiva_ws::serve_admin(admin, admin_transport).await {
                tracing::error!(error = %e, "the admin listener failed");
            }
        });
    }
    match tls {
        Some(tls) => {
            tracing::info!(%addr, tls = true, "JivaChat listening");
            reload_on_sighup(tls.clone(), transport.clone());
            jiva_ws::serve_tls(listener, transport, tls, shutdown)
                .await
                .context("serving")?;
        }
        None => {
            tracing::info!(%addr, "JivaChat listening");
            jiva_ws::serve(listener, transport, shutdown)
                .await
                .context("serving")?;
        }
    }
    if let Some(queue) = notifications {
        let report = queue.shutdown(config.transport.shutdown_grace).await;
        tracing::info!(
            delivered = report.delivered,
            failed = report.failed,
            dropped = report.dropped,
            timed_out = report.timed_out,
            "notification queue flushed"
        );
    }
    tracing::info!("JivaChat stopped");
    Ok(())
}

/// Reloads the TLS certificate on each SIGHUP until the transport shuts down.
fn reload_on_sighup(tls: jiva_ws::Tls, transport: Transport) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP not handled: TLS reloads on file changes only");
                return;
            }
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    got = hangups.recv() => {
                        if got.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP: reloading the TLS certificate");
                        // A failure is logged (and the old certificate kept) by `reload`.
                        let _ = tls.reload();
                    }
                    () = transport.shutting_down() => return,
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (tls, transport);
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
