//! Integration tests of `jiva-store-dynamo` against a real DynamoDB-compatible server on
//! 127.0.0.1 (moto, started by `LocalDynamo`, or `JIVA_TEST_DYNAMODB_ENDPOINT`). One binary,
//! one server, a fresh pair of tables per test.

// `cfg(test)` (always true here) lets clippy's allow-*-in-tests settings cover the helpers too.
#[cfg(test)]
mod by_seq;
#[cfg(test)]
mod claims;
#[cfg(test)]
mod errors;
#[cfg(test)]
mod history;
#[cfg(test)]
mod legacy;
#[cfg(test)]
mod round_trip;
#[cfg(test)]
mod seek;
#[cfg(test)]
mod seq;
#[cfg(test)]
mod support;
#[cfg(test)]
mod tables;
