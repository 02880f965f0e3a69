//! SDK errors to [`StoreError`], at the edge. Nothing SDK-typed leaves this crate.

use std::error::Error as StdError;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use jiva_core::StoreError;

/// DynamoDB error codes that mean "slow down".
const THROTTLING: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "Throttling",
    "TooManyRequestsException",
];

/// Error codes of requests that are wrong as sent (a bug or a misconfiguration, not weather).
const INVALID: &[&str] = &["ValidationException", "SerializationException"];

/// Error codes of writes that lost against concurrent state.
const CONFLICT: &[&str] = &[
    "TransactionConflictException",
    "ItemCollectionSizeLimitExceededException",
    "ConditionalCheckFailedException",
];

/// The DynamoDB error code of a failed call, if the service sent one.
pub(crate) fn code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// Translates a failed SDK call. `what` names the operation for the error text.
///
/// Throttling codes (after the SDK's own retries) become [`StoreError::Throttled`]; validation
/// errors [`StoreError::InvalidInput`]; lost conditional or transactional writes
/// [`StoreError::Conflict`]; everything else (no connection, time-outs, unreadable responses,
/// server errors, a missing table, refused credentials) [`StoreError::Unavailable`].
pub(crate) fn translate<E, R>(what: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = code(&err).map(str::to_owned);
    let cause = Box::new(CallFailed {
        what,
        source: Box::new(err),
    });
    match code.as_deref() {
        Some(c) if THROTTLING.contains(&c) => StoreError::Throttled(cause),
        Some(c) if INVALID.contains(&c) => {
            StoreError::InvalidInput(format!("DynamoDB rejected {what}: {c}"))
        }
        Some(c) if CONFLICT.contains(&c) => StoreError::Conflict(cause),
        _ => StoreError::Unavailable(cause),
    }
}

/// A failed DynamoDB call, with the SDK's error as its source.
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {what} failed")]
pub(crate) struct CallFailed {
    what: &'static str,
    #[source]
    source: Box<dyn StdError + Send + Sync>,
}

/// A plain-text cause for errors this crate detects itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Problem(pub(crate) String);

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::query::QueryError;

    fn service_error(code: &str) -> SdkError<QueryError, ()> {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        SdkError::service_error(QueryError::generic(meta), ())
    }

    #[test]
    fn service_codes_map_to_actionable_variants() {
        assert!(matches!(
            translate(
                "Query",
                service_error("ProvisionedThroughputExceededException")
            ),
            StoreError::Throttled(_)
        ));
        assert!(matches!(
            translate("Query", service_error("ThrottlingException")),
            StoreError::Throttled(_)
        ));
        assert!(matches!(
            translate("Query", service_error("ValidationException")),
            StoreError::InvalidInput(_)
        ));
        assert!(matches!(
            translate("Query", service_error("TransactionConflictException")),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            translate("Query", service_error("InternalServerError")),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            translate("Query", service_error("ResourceNotFoundException")),
            StoreError::Unavailable(_)
        ));
        let timeout: SdkError<QueryError, ()> =
            SdkError::timeout_error(Box::new(Problem("slow".into())));
        assert!(translate("Query", timeout).is_transient());
    }
}
