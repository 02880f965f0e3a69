//! Asks a copilot endpoint one question and prints the streamed chunks as they arrive.
//!
//! ```text
//! cargo run -p jiva-copilot --example ask -- http://127.0.0.1:8000/copilot "What is our refund policy?"
//! ```
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use futures_util::StreamExt;
use jiva_copilot::{Config, HttpCopilot};
use jiva_core::{AgentId, ChatId, ConnectionType, Copilot, CopilotRequest};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(endpoint), Some(input)) = (args.next(), args.next()) else {
        eprintln!("usage: ask ENDPOINT QUESTION");
        return ExitCode::from(2);
    };
    let copilot = match HttpCopilot::new(Config::new(endpoint)) {
        Ok(copilot) => copilot,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Ok(agent) = AgentId::parse("example-agent") else {
        return ExitCode::FAILURE;
    };
    let request = CopilotRequest {
        chat: ChatId::new(agent, ConnectionType::Copilot),
        input,
        history: Vec::new(),
    };
    let mut stream = match copilot.ask(request).await {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => println!("action={:?} output={:?}", chunk.action, chunk.output),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
