//! Criterion benchmark of the fan-out of one stored frame to a chat's sockets on this server:
//! the append's room look-up, the chat's sequencer, and a copy queued on each subscriber's
//! bounded queue (an `Arc` clone, as the transport's frames are), then each queue emptied as
//! its writer would. Not included: waking the writers' tasks and the socket writes.
//! Run: `cargo bench -p jiva-chat --bench fanout`.
#![allow(missing_docs)] // criterion_group! generates an undocumented `pub fn`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jiva_chat::bench::Fanout;

fn show(c: &mut Criterion) {
    let mut g = c.benchmark_group("show");
    for sockets in [10_usize, 1_000] {
        let Some(mut fanout) = Fanout::new(sockets) else {
            return;
        };
        g.throughput(Throughput::Elements(sockets as u64));
        g.bench_with_input(BenchmarkId::new("sockets", sockets), &sockets, |b, _| {
            b.iter(|| fanout.show_next());
        });
    }
    g.finish();
}

criterion_group!(benches, show);
criterion_main!(benches);
