//! Criterion benchmarks of the wire frames on the fan-out path: reading a client's chat frame
//! (typed: four keys read, borrowed where unescaped, the rest skipped) and encoding the stored
//! frame that every socket of the chat is sent (once per message, shared).
//! Run: `cargo bench -p jiva-ws --bench frames`.
#![allow(missing_docs)] // criterion_group! generates an undocumented `pub fn`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jiva_core::{AgentId, ChatId, ConnectionType, Message, Sender, Seq};

/// What jivachat-bench's fan-out sends: `{sender}.{seq}.{nanos}` as the text.
const INBOUND: &str = r#"{"chat_id":"bench","sender":"agent","message":"0.12345.987654321012"}"#;
const INBOUND_KEEPALIVE: &str = r#"{"ping":"pong"}"#;

fn inbound(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_inbound");
    g.bench_function("chat message", |b| {
        b.iter(|| jiva_ws::bench::parse_inbound(black_box(INBOUND)));
    });
    g.bench_function("keepalive", |b| {
        b.iter(|| jiva_ws::bench::parse_inbound(black_box(INBOUND_KEEPALIVE)));
    });
    g.finish();
}

fn stored(c: &mut Criterion) {
    let Ok(agent) = AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21") else {
        return;
    };
    let chat = ChatId::new(agent, ConnectionType::Supervisor);
    // Live frames carry the chat's sequence number.
    let mut short = Message::user(chat.clone(), Sender::Agent, "0.12345.987654321012".into());
    short.seq = Some(Seq::new(12_345));
    let mut long = Message::user(chat, Sender::Supervisor, "é \"quoted\" ".repeat(100));
    long.seq = Some(Seq::new(12_346));
    let mut g = c.benchmark_group("encode_stored");
    g.bench_function("20-byte text", |b| {
        b.iter(|| jiva_ws::bench::encode_stored(black_box(&short)));
    });
    g.bench_function("1.3 KiB text with escapes", |b| {
        b.iter(|| jiva_ws::bench::encode_stored(black_box(&long)));
    });
    g.finish();
}

criterion_group!(benches, inbound, stored);
criterion_main!(benches);
