//! Criterion benchmark of the embedded store's append path: a batch of messages appended
//! concurrently (as many sockets' messages arrive at once), so the writer thread's group commit
//! merges what is waiting. Each iteration is one batch into a store in a temporary directory.
//! Run: `cargo bench -p jiva-store-sqlite --bench append`.
#![allow(missing_docs)] // criterion_group! generates an undocumented `pub fn`

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use jiva_core::{AgentId, ChatId, ConnectionType, Message, MessageStore, Sender};
use jiva_store_sqlite::{Config, SqliteStore};

fn append_batch(c: &mut Criterion) {
    let (Ok(runtime), Ok(dir)) = (
        tokio::runtime::Builder::new_current_thread().build(),
        tempfile::tempdir(),
    ) else {
        return;
    };
    let Ok(store) = SqliteStore::open(Config::in_dir(dir.path())) else {
        return;
    };
    let store: Arc<dyn MessageStore> = Arc::new(store);
    let chats: Vec<ChatId> = (0..100u32)
        .filter_map(|i| AgentId::parse(&format!("0b5c7e2a-4f1d-4c39-9a57-{i:012}")).ok())
        .map(|a| ChatId::new(a, ConnectionType::Supervisor))
        .collect();
    for chat in &chats {
        if runtime.block_on(store.register_chat(chat)).is_err() {
            return;
        }
    }
    let mut g = c.benchmark_group("append");
    for batch in [1usize, 100] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch of {batch} over 100 chats"), |b| {
            b.iter_batched(
                || {
                    chats
                        .iter()
                        .cycle()
                        .take(batch)
                        .map(|chat| Message::user(chat.clone(), Sender::Agent, "0.1.2".into()))
                        .collect::<Vec<_>>()
                },
                |messages| {
                    runtime.block_on(async {
                        join_all(messages.iter().map(|m| store.append(m))).await
                    })
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, append_batch);
criterion_main!(benches);
