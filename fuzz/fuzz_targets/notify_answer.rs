//! Feeds arbitrary AppSync answers (a status from the first two bytes, the rest as the body) to
//! the classification a delivery makes, and checks that it never panics, that only a 2xx answer
//! counts as delivered and only a 5xx or 429 as transient, and that reasons stay short whatever
//! the server sent.
#![no_main]

use jiva_notify_amplify::fuzzing::{Answer, classify};
use libfuzzer_sys::fuzz_target;

/// Three error summaries of at most 200 characters, separators, the status and "(and N more)".
const MAX_REASON_CHARS: usize = 700;

/// 5xx and 429 may pass; every other status (non-standard 6xx to 9xx included) will not.
fn transient(status: u16) -> bool {
    (500..600).contains(&status) || status == 429
}

fuzz_target!(|data: &[u8]| {
    let [hi, lo, body @ ..] = data else {
        return;
    };
    let status = u16::from_be_bytes([*hi, *lo]) % 1000;
    let Some(answer) = classify(status, body) else {
        return;
    };
    match answer {
        Answer::Delivered(id) => {
            assert!((200..300).contains(&status), "delivered on {status}");
            assert!(id.is_none_or(|id| id.len() <= body.len()));
        }
        Answer::Transient(reason) => {
            assert!(transient(status), "transient on {status}");
            assert!(reason.chars().count() <= MAX_REASON_CHARS, "{reason}");
        }
        Answer::Rejected(reason) => {
            assert!(!transient(status), "rejected on {status}");
            assert!(reason.chars().count() <= MAX_REASON_CHARS, "{reason}");
        }
    }
});
