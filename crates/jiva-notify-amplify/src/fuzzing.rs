//! Entry points for the fuzz targets in the repository's `fuzz/` crate. Not API: hidden from the
//! docs, and free to change with the classification they expose.

/// How an AppSync answer is classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Taken; the created notification's `id` when the answer carried one.
    Delivered(Option<String>),
    /// Refused, with the reason that is logged.
    Rejected(String),
    /// Failed in a way that may pass, with the reason.
    Transient(String),
}

/// Classifies an answer of HTTP `status` (100 to 999) with `body`, as a delivery does; `None`
/// when `status` is not a valid status code.
pub fn classify(status: u16, body: &[u8]) -> Option<Answer> {
    let status = reqwest::StatusCode::from_u16(status).ok()?;
    let classified = crate::client::classify(status, body);
    Some(match classified.attempt {
        crate::retry::Attempt::Delivered => Answer::Delivered(classified.created_id),
        crate::retry::Attempt::Rejected(reason) => Answer::Rejected(reason),
        crate::retry::Attempt::Transient(reason) => Answer::Transient(reason),
    })
}
