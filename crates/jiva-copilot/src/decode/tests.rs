use super::*;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;

fn chunk(action: Option<&str>, output: Option<&str>) -> CopilotChunk {
    CopilotChunk {
        action: action.map(Into::into),
        output: output.map(Into::into),
    }
}

/// Feeds `pieces` one after another and finishes.
fn decode_pieces<'a>(
    max: usize,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<CopilotChunk, DecodeError>> {
    let mut decoder = ChunkDecoder::new(max);
    let mut out = Vec::new();
    for piece in pieces {
        out.extend(decoder.push(piece));
    }
    out.extend(decoder.finish());
    out
}

fn decode_whole(body: &[u8]) -> Vec<Result<CopilotChunk, DecodeError>> {
    decode_pieces(DEFAULT_MAX_OBJECT_BYTES, [body])
}

/// Decodes `body` split at every single point, and byte by byte; all must agree with `expected`.
fn assert_every_split(body: &[u8], expected: &[Result<CopilotChunk, DecodeError>]) {
    assert_eq!(decode_whole(body), expected, "whole body");
    for at in 0..=body.len() {
        let (a, b) = body.split_at(at);
        assert_eq!(
            decode_pieces(DEFAULT_MAX_OBJECT_BYTES, [a, b]),
            expected,
            "split at {at}"
        );
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(
        decode_pieces(DEFAULT_MAX_OBJECT_BYTES, bytes),
        expected,
        "byte by byte"
    );
}

fn oks(chunks: &[CopilotChunk]) -> Vec<Result<CopilotChunk, DecodeError>> {
    chunks.iter().cloned().map(Ok).collect()
}

#[test]
fn concatenated_objects_with_hostile_strings_decode_at_every_split() {
    let body = r#"{"action":"a}b","output":"{\"x\":1}"}{"action":null,"output":"😀 é\\\n}"}"#;
    assert_every_split(
        body.as_bytes(),
        &oks(&[
            chunk(Some("a}b"), Some("{\"x\":1}")),
            chunk(None, Some("😀 é\\\n}")),
        ]),
    );
}

#[test]
fn unicode_escapes_and_surrogate_pairs_decode_at_every_split() {
    let body = r#"{"output":"\u00e9\ud83d\ude00\"\/"}"#;
    assert_every_split(body.as_bytes(), &oks(&[chunk(None, Some("é😀\"/"))]));
}

#[test]
fn values_pass_through_unchanged() {
    let body = concat!(
        r#"{"action":"tool","output":"Processing Results\n"}"#,
        r#"{"action":null,"output":null}"#,
        r#"{"output":"only output"}"#,
        r#"{"action":"only action"}"#,
        r#"{}"#,
        r#"{"action":"x","output":"","extra":{"nested":[1,{"a":"}"}]},"n":3}"#,
    );
    assert_eq!(
        decode_whole(body.as_bytes()),
        oks(&[
            chunk(Some("tool"), Some("Processing Results\n")),
            chunk(None, None),
            chunk(None, Some("only output")),
            chunk(Some("only action"), None),
            chunk(None, None),
            chunk(Some("x"), Some("")),
        ])
    );
}

#[test]
fn newline_delimited_json_with_crlf_is_accepted() {
    let body = "\r\n{\"output\":\"a\"}\r\n{\"output\":\"b\\n\"}\n\n  {\"output\":\"c\"}\n";
    assert_every_split(
        body.as_bytes(),
        &oks(&[
            chunk(None, Some("a")),
            chunk(None, Some("b\n")),
            chunk(None, Some("c")),
        ]),
    );
}

#[test]
fn server_sent_events_are_accepted_and_done_ends_them() {
    let body = concat!(
        ": a comment\r\n",
        "event: data\r\n",
        "id: 1\r\n",
        "data: {\"action\":\"a\",\"output\":\"x}\"}\r\n",
        "\r\n",
        "retry: 100\n",
        "data:{\"output\":\"no space\"}\n\n",
        "data: {\"output\":\n",
        "data: \"split over lines\"}\r\r",
        "data: [DONE]\n\n",
        "data: {\"output\":\"after done\"}\n\n",
        "garbage after done",
    );
    assert_every_split(
        body.as_bytes(),
        &oks(&[
            chunk(Some("a"), Some("x}")),
            chunk(None, Some("no space")),
            chunk(None, Some("split over lines")),
        ]),
    );
}

#[test]
fn server_sent_events_without_a_final_line_ending_still_decode() {
    assert_eq!(
        decode_whole(b"data: {\"output\":\"last\"}"),
        oks(&[chunk(None, Some("last"))])
    );
}

#[test]
fn empty_and_blank_bodies_decode_to_nothing() {
    assert_eq!(decode_whole(b""), vec![]);
    assert_eq!(decode_whole(b" \r\n\t\n"), vec![]);
}

#[test]
fn a_body_ending_inside_an_object_is_truncated_after_the_chunks_so_far() {
    let body = br#"{"output":"one"}{"output":"tw"#;
    assert_eq!(
        decode_whole(body),
        vec![Ok(chunk(None, Some("one"))), Err(DecodeError::Truncated)]
    );
    assert_eq!(
        decode_whole(b"data: {\"output\":\"one\"}\n\ndata: {\"out"),
        vec![Ok(chunk(None, Some("one"))), Err(DecodeError::Truncated)]
    );
}

#[test]
fn garbage_is_an_error_and_nothing_follows_it() {
    let mut decoder = ChunkDecoder::default();
    let first = decoder.push(br#"{"output":"ok"}xyz{"output":"never"}"#);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], Ok(chunk(None, Some("ok"))));
    assert!(matches!(first[1], Err(DecodeError::Invalid(_))));
    assert_eq!(decoder.push(br#"{"output":"still never"}"#), vec![]);
    assert_eq!(decoder.finish(), vec![]);
}

#[test]
fn neither_json_nor_events_is_an_error() {
    for body in [
        &b"<html>502 Bad Gateway</html>\n"[..],
        b"hello\n",
        b"[{\"output\":\"x\"}]",
    ] {
        let out = decode_whole(body);
        assert!(
            matches!(out.as_slice(), [Err(DecodeError::Invalid(_))]),
            "{out:?}"
        );
    }
}

#[test]
fn wrong_types_are_errors_that_do_not_quote_the_answer() {
    for body in [
        &br#"{"action":["secret words"]}"#[..],
        br#"{"output":"fine","action":12345678}"#,
        br#"{"output":"secret words",}"#,
        br#"{"output" "secret words"}"#,
    ] {
        let out = decode_whole(body);
        match out.as_slice() {
            [Err(DecodeError::Invalid(reason))] => {
                assert!(!reason.contains("secret"), "{reason}");
                assert!(!reason.contains("12345678"), "{reason}");
            }
            other => panic!("unexpected {other:?} for {body:?}"),
        }
    }
}

#[test]
fn invalid_utf8_inside_an_object_is_an_error() {
    let out = decode_whole(b"{\"output\":\"\xff\xfe\"}");
    assert!(
        matches!(out.as_slice(), [Err(DecodeError::Invalid(_))]),
        "{out:?}"
    );
}

#[test]
fn an_event_ending_inside_an_object_is_an_error() {
    let out = decode_whole(b"data: {\"output\":\n\ndata: \"x\"}\n\n");
    assert!(
        matches!(out.as_slice(), [Err(DecodeError::Invalid(_))]),
        "{out:?}"
    );
}

#[test]
fn objects_up_to_the_limit_pass_and_bigger_ones_are_too_large() {
    let fits = br#"{"output":"12345"}"#; // 18 bytes
    assert_eq!(
        decode_pieces(18, [&fits[..]]),
        oks(&[chunk(None, Some("12345"))])
    );
    let body = br#"{"output":"1"}{"output":"123456"}"#;
    assert_eq!(
        decode_pieces(18, [&body[..]]),
        vec![Ok(chunk(None, Some("1"))), Err(DecodeError::TooLarge(18))]
    );
}

#[test]
fn an_endless_object_stays_within_the_limit() {
    let mut decoder = ChunkDecoder::new(1000);
    let mut out = decoder.push(b"{\"output\":\"");
    for _ in 0..100 {
        out.extend(decoder.push(&[b'x'; 100]));
        assert!(decoder.buffered() <= 1000);
    }
    assert_eq!(out, vec![Err(DecodeError::TooLarge(1000))]);
}

#[test]
fn an_endless_event_line_stays_within_the_limit() {
    let mut decoder = ChunkDecoder::new(1000);
    let mut out = decoder.push(b": ");
    for _ in 0..100 {
        out.extend(decoder.push(&[b'x'; 100]));
        assert!(decoder.buffered() <= 1000 + SSE_LINE_SLACK);
    }
    assert_eq!(out, vec![Err(DecodeError::TooLarge(1000))]);
}

#[test]
fn decode_errors_become_copilot_errors() {
    assert!(matches!(
        CopilotError::from(DecodeError::Truncated),
        CopilotError::Truncated
    ));
    assert!(matches!(
        CopilotError::from(DecodeError::TooLarge(7)),
        CopilotError::TooLarge(7)
    ));
    assert!(matches!(
        CopilotError::from(DecodeError::Invalid("why".into())),
        CopilotError::Decode(reason) if reason == "why"
    ));
}

// ---- properties ----

/// Strings made mostly of the characters that break naive decoders.
fn hostile_string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        Just('}'),
        Just('{'),
        Just('"'),
        Just('\\'),
        Just('\n'),
        Just('\r'),
        Just(':'),
        Just('😀'),
        Just('é'),
        Just('\u{0}'),
        Just('\u{2028}'),
        any::<char>(),
    ];
    prop::collection::vec(ch, 0..16).prop_map(|cs| cs.into_iter().collect())
}

fn arb_chunk() -> impl Strategy<Value = CopilotChunk> {
    (
        prop::option::of(hostile_string()),
        prop::option::of(prop_oneof![
            hostile_string(),
            Just("Processing Results\n".to_string())
        ]),
    )
        .prop_map(|(action, output)| CopilotChunk { action, output })
}

#[derive(Debug, Clone, Copy)]
enum Framing3 {
    Concatenated,
    Ndjson,
    Sse,
}

/// How one object is written: absent `None` fields, extra fields, `\u` escapes for non-ASCII.
#[derive(Debug, Clone, Copy)]
struct Style {
    omit_nulls: bool,
    extra_field: bool,
    ascii_only: bool,
    crlf: bool,
}

fn arb_style() -> impl Strategy<Value = Style> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(omit_nulls, extra_field, ascii_only, crlf)| Style {
            omit_nulls,
            extra_field,
            ascii_only,
            crlf,
        },
    )
}

fn object_json(c: &CopilotChunk, style: Style) -> String {
    let mut map = serde_json::Map::new();
    if c.action.is_some() || !style.omit_nulls {
        map.insert("action".into(), json!(c.action));
    }
    if c.output.is_some() || !style.omit_nulls {
        map.insert("output".into(), json!(c.output));
    }
    if style.extra_field {
        map.insert("zz".into(), json!({"s": "}{\"", "n": [1, {"x": null}]}));
    }
    let text = serde_json::Value::Object(map).to_string();
    if !style.ascii_only {
        return text;
    }
    // Non-ASCII characters only occur inside strings, so escaping them keeps valid JSON.
    let mut ascii = String::new();
    for ch in text.chars() {
        if ch.is_ascii() {
            ascii.push(ch);
        } else {
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    ascii
}

fn frame(chunks: &[CopilotChunk], framing: Framing3, style: Style, done: bool) -> Vec<u8> {
    let eol = if style.crlf { "\r\n" } else { "\n" };
    let mut body = String::new();
    for (i, c) in chunks.iter().enumerate() {
        let object = object_json(c, style);
        match framing {
            Framing3::Concatenated => body.push_str(&object),
            Framing3::Ndjson => {
                body.push_str(&object);
                body.push_str(eol);
            }
            Framing3::Sse => {
                if i % 2 == 0 {
                    body.push_str(&format!("event: data{eol}id: {i}{eol}: keepalive{eol}"));
                }
                body.push_str(&format!("data: {object}{eol}{eol}"));
            }
        }
    }
    if done && matches!(framing, Framing3::Sse) {
        body.push_str(&format!(
            "data: [DONE]{eol}{eol}data: {{\"output\":\"x\"}}{eol}"
        ));
    }
    body.into_bytes()
}

fn split_at_points(body: &[u8], points: &[Index]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p.index(body.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(body[start..cut].to_vec());
        start = cut;
    }
    pieces.push(body[start..].to_vec());
    pieces
}

fn arb_framing() -> impl Strategy<Value = Framing3> {
    prop_oneof![
        Just(Framing3::Concatenated),
        Just(Framing3::Ndjson),
        Just(Framing3::Sse)
    ]
}

/// Bytes that steer the decoder into its interesting states, and some of anything.
fn arb_noise() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        prop::sample::select(b"{}[]\"\\:, \n\rdata[DONE]eventid0".to_vec()),
        any::<u8>(),
    ];
    prop::collection::vec(byte, 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_framing_split_anywhere_decodes_to_the_original(
        chunks in prop::collection::vec(arb_chunk(), 0..8),
        framing in arb_framing(),
        style in arb_style(),
        done in any::<bool>(),
        points in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let body = frame(&chunks, framing, style, done);
        let pieces = split_at_points(&body, &points);
        let decoded = decode_pieces(DEFAULT_MAX_OBJECT_BYTES, pieces.iter().map(Vec::as_slice));
        prop_assert_eq!(decoded, oks(&chunks));
    }

    #[test]
    fn a_cut_off_body_yields_a_prefix_then_at_most_one_error(
        chunks in prop::collection::vec(arb_chunk(), 1..6),
        framing in arb_framing(),
        style in arb_style(),
        cut in any::<Index>(),
    ) {
        let body = frame(&chunks, framing, style, false);
        let cut = cut.index(body.len());
        let decoded = decode_whole(&body[..cut]);
        let (ok, err): (Vec<_>, Vec<_>) = decoded.iter().partition(|r| r.is_ok());
        prop_assert!(ok.len() <= chunks.len());
        for (got, want) in ok.iter().zip(&chunks) {
            prop_assert_eq!(*got, &Ok(want.clone()));
        }
        prop_assert!(err.len() <= 1);
        if let Some(last) = err.first() {
            prop_assert!(decoded.last() == Some(*last));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_do_not_depend_on_splits(
        body in arb_noise(),
        points in prop::collection::vec(any::<Index>(), 0..16),
        max in 1usize..64,
    ) {
        let whole = decode_pieces(max, [body.as_slice()]);
        let pieces = split_at_points(&body, &points);
        let mut decoder = ChunkDecoder::new(max);
        let mut split = Vec::new();
        for piece in &pieces {
            split.extend(decoder.push(piece));
            prop_assert!(decoder.buffered() <= 2 * max + SSE_LINE_SLACK);
        }
        split.extend(decoder.finish());
        prop_assert_eq!(&split, &whole);
        let errors = split.iter().filter(|r| r.is_err()).count();
        prop_assert!(errors <= 1);
        if errors == 1 {
            prop_assert!(split.last().is_some_and(Result::is_err));
        }
    }

    #[test]
    fn fully_arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..300),
        points in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let pieces = split_at_points(&body, &points);
        let split = decode_pieces(64, pieces.iter().map(Vec::as_slice));
        let whole = decode_pieces(64, [body.as_slice()]);
        prop_assert_eq!(split, whole);
    }
}
