//! Feeds arbitrary bytes to the answer decoder, split at points taken from the input, and checks
//! that it never panics, stays within its memory bound, reports at most one error (last), and
//! decodes the same whatever the splits.
#![no_main]

use jiva_copilot::decode::ChunkDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: the object limit; second: the split seed; the rest: the body.
    let [limit, seed, body @ ..] = data else {
        return;
    };
    let max = usize::from(*limit) + 1;

    let mut whole = ChunkDecoder::new(max);
    let mut expected = whole.push(body);
    expected.extend(whole.finish());

    let mut split = ChunkDecoder::new(max);
    let mut got = Vec::new();
    let mut rest = body;
    let mut step = usize::from(*seed);
    while !rest.is_empty() {
        step = (step * 31 + 7) % 17;
        let (piece, tail) = rest.split_at(step.min(rest.len()));
        got.extend(split.push(piece));
        assert!(split.buffered() <= 2 * max + 64, "buffer grew past its bound");
        rest = tail;
    }
    got.extend(split.finish());

    assert_eq!(got, expected, "decoding depends on where the body was split");
    let errors = got.iter().filter(|item| item.is_err()).count();
    assert!(errors <= 1);
    if errors == 1 {
        assert!(got.last().is_some_and(Result::is_err), "an item followed an error");
    }
});
