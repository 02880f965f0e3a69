//! Shared helpers: the copilot stand-in (`jiva_copilot::testing`, one script per test here),
//! bounds on every wait, a configuration and a question.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use jiva_copilot::Config;
use jiva_core::{AgentId, ChatId, ConnectionType, CopilotChunk, CopilotError, CopilotRequest};
use jiva_core::{ChunkStream, Role, Turn};

/// The longest any test waits for anything; a hang fails the test instead of blocking CI.
pub const BOUND: Duration = Duration::from_secs(10);

/// Runs `fut`, failing the test if it takes longer than [`BOUND`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .expect("the test did not finish within its bound")
}

pub use jiva_copilot::testing::{
    Recorded, StandIn, Step, chunk, end, fixed, head_chunked, head_close_delimited, raw,
};

/// Starts a stand-in that serves one connection with `steps`.
pub async fn serve(steps: Vec<Step>) -> StandIn {
    StandIn::serve(steps).await.unwrap()
}

/// The next request `server` received.
pub async fn request(server: &mut StandIn) -> Recorded {
    within(server.request())
        .await
        .expect("the stand-in received no request")
}

/// A configuration with generous limits, so that only the tests about limits hit them.
pub fn config(url: &str) -> Config {
    let mut config = Config::new(url);
    config.connect_timeout = Duration::from_secs(5);
    config.first_byte_timeout = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(5);
    config
}

/// A question with one earlier exchange.
pub fn question() -> CopilotRequest {
    CopilotRequest {
        chat: ChatId::new(
            AgentId::parse("4f9c2a1e-77b2-4c1e-9a3d-0c5e6f7a8b9c").unwrap(),
            ConnectionType::Copilot,
        ),
        input: "And the \"refund\" policy? }".into(),
        history: vec![
            Turn {
                role: Role::Human,
                content: "Hi 😀".into(),
            },
            Turn {
                role: Role::Ai,
                content: "Hello!\nHow can I help?".into(),
            },
        ],
    }
}

pub fn chunk_of(action: Option<&str>, output: Option<&str>) -> CopilotChunk {
    CopilotChunk {
        action: action.map(Into::into),
        output: output.map(Into::into),
    }
}

/// Every item of `stream`, up to and including its end.
pub async fn collect(stream: ChunkStream) -> Vec<Result<CopilotChunk, CopilotError>> {
    within(stream.collect::<Vec<_>>()).await
}

/// The chunks of `items`, which must all be `Ok`.
pub fn all_ok(items: Vec<Result<CopilotChunk, CopilotError>>) -> Vec<CopilotChunk> {
    items
        .into_iter()
        .map(|item| item.unwrap_or_else(|e| panic!("unexpected error {e:?}")))
        .collect()
}
