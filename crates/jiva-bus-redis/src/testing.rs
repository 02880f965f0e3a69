//! Test support (feature `testing`): a real `redis-server` on a free loopback port, stopped
//! when dropped, that a test can stop and start again on the same port.

use std::time::Duration;

use tokio::process::{Child, Command};

use crate::{Config, RedisUrl};

/// How long `redis-server` may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A `redis-server` on 127.0.0.1 (`scripts/ensure-redis.sh` installs it), killed when dropped.
#[derive(Debug)]
pub struct LocalRedis {
    port: u16,
    child: Option<Child>,
}

impl LocalRedis {
    /// Starts a server on a free port and waits until it accepts connections.
    pub async fn start() -> Result<Self, String> {
        let mut redis = Self::reserve()?;
        redis.run().await?;
        Ok(redis)
    }

    /// Picks a free port without starting a server there yet ([`LocalRedis::run`] starts it):
    /// for clients that must cope with Redis being down when they start.
    pub fn reserve() -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        Ok(Self { port, child: None })
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub async fn run(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}); run scripts/ensure-redis.sh"))?;
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        tokio::time::timeout(START_DEADLINE, async {
            // Polls the port until the server listens (its start-up has no other signal).
            while tokio::net::TcpStream::connect(&addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map_err(|_| "redis-server did not start listening".to_owned())
    }

    /// Kills the server (the port stays this value's).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A bus [`Config`] for this server, reconnecting at most 500 ms apart.
    pub fn config(&self) -> Config {
        let mut config = Config::new(RedisUrl::new(self.url()));
        config.max_backoff = Duration::from_millis(500);
        config
    }
}
