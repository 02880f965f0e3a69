//! Creating (and checking) the tables: [`DynamoStore::create_tables`].

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableDescription, TableStatus,
};
use jiva_core::StoreError;

use crate::error::translate;
use crate::item::{AGENT_ID, CHAT_ID, MESSAGE_ID, SECONDARY_ID, SEQ, SORT_KEY, TIMESTAMP};
use crate::store::{DynamoStore, Layout, unavailable};

/// How long [`DynamoStore::create_tables`] waits for a new table to become `ACTIVE`.
const ACTIVE_WAIT: Duration = Duration::from_secs(300);

/// The first pause between two `DescribeTable` calls while a table is being created; doubled
/// after each call up to [`POLL_MAX`]. (The SDK's waiter starts at 20 s, which turns a local
/// server's instant creation, or DynamoDB's few seconds, into twenty.)
const POLL_FIRST: Duration = Duration::from_millis(100);

/// The longest pause between two `DescribeTable` calls.
const POLL_MAX: Duration = Duration::from_secs(5);

/// Whether a described table, and every index it has, is `ACTIVE`.
fn is_active(table: &TableDescription) -> bool {
    table.table_status() == Some(&TableStatus::Active)
        && table
            .global_secondary_indexes()
            .iter()
            .all(|g| g.index_status().is_none_or(|s| *s == IndexStatus::Active))
}

/// Calls `describe` until it reports an active table, pausing [`POLL_FIRST`] after the first
/// call and doubling up to [`POLL_MAX`]; gives up once `limit` has passed. `Ok(false)` when the
/// limit passed first; a failed call ends the wait with its error.
async fn poll_until_active<F, Fut>(mut describe: F, limit: Duration) -> Result<bool, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<TableDescription>, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = POLL_FIRST;
    loop {
        if describe().await?.as_ref().is_some_and(is_active) {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// What [`DynamoStore::create_tables`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSetup {
    /// Tables this call created (and waited for until `ACTIVE`).
    pub created: Vec<String>,
    /// Tables that were already there with the expected key schema; left unchanged.
    pub existing: Vec<String>,
}

/// A key attribute: name, role, type.
type KeyAttr = (&'static str, KeyType, ScalarAttributeType);

fn chats_key() -> Vec<KeyAttr> {
    vec![
        (AGENT_ID, KeyType::Hash, ScalarAttributeType::S),
        (SECONDARY_ID, KeyType::Range, ScalarAttributeType::S),
    ]
}

fn native_messages_key() -> Vec<KeyAttr> {
    vec![
        (CHAT_ID, KeyType::Hash, ScalarAttributeType::S),
        (SORT_KEY, KeyType::Range, ScalarAttributeType::S),
    ]
}

fn legacy_messages_key() -> Vec<KeyAttr> {
    vec![(MESSAGE_ID, KeyType::Hash, ScalarAttributeType::S)]
}

fn legacy_index_key() -> Vec<KeyAttr> {
    vec![
        (CHAT_ID, KeyType::Hash, ScalarAttributeType::S),
        (TIMESTAMP, KeyType::Range, ScalarAttributeType::N),
    ]
}

/// The sparse sequence index of the legacy layout ([`crate::Config::legacy_seq_index`]).
fn legacy_seq_index_key() -> Vec<KeyAttr> {
    vec![
        (CHAT_ID, KeyType::Hash, ScalarAttributeType::S),
        (SEQ, KeyType::Range, ScalarAttributeType::N),
    ]
}

/// A global secondary index a table must have: its name and key.
type Index<'a> = (&'a str, Vec<KeyAttr>);

fn key_schema(key: &[KeyAttr]) -> Result<Vec<KeySchemaElement>, StoreError> {
    key.iter()
        .map(|(name, role, _)| {
            KeySchemaElement::builder()
                .attribute_name(*name)
                .key_type(role.clone())
                .build()
                .map_err(|e| StoreError::InvalidInput(e.to_string()))
        })
        .collect()
}

fn definitions(keys: &[&[KeyAttr]]) -> Result<Vec<AttributeDefinition>, StoreError> {
    let mut out: Vec<AttributeDefinition> = Vec::new();
    for (name, _, kind) in keys.iter().flat_map(|k| k.iter()) {
        if out.iter().any(|d| d.attribute_name() == *name) {
            continue;
        }
        out.push(
            AttributeDefinition::builder()
                .attribute_name(*name)
                .attribute_type(kind.clone())
                .build()
                .map_err(|e| StoreError::InvalidInput(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Whether `actual` (a table's or index's key schema) is exactly `expected`, types included.
fn same_key(
    actual: &[KeySchemaElement],
    definitions: &[AttributeDefinition],
    expected: &[KeyAttr],
) -> bool {
    actual.len() == expected.len()
        && expected.iter().all(|(name, role, kind)| {
            actual
                .iter()
                .any(|k| k.attribute_name() == *name && k.key_type() == role)
                // A definition of another type is a mismatch; a missing one is not (some
                // DynamoDB-compatible servers drop table key definitions on UpdateTable).
                && !definitions
                    .iter()
                    .any(|d| d.attribute_name() == *name && d.attribute_type() != kind)
        })
}

fn describe_key(key: &[KeyAttr]) -> String {
    key.iter()
        .map(|(name, role, kind)| format!("{name} {} {}", role.as_str(), kind.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DynamoStore {
    /// Creates the `Chats` and `Messages` tables when they do not exist (on-demand billing) and
    /// waits until they are `ACTIVE`. Idempotent: existing tables are checked, never changed.
    ///
    /// - `Chats`: key (`AgentID` S, `SecondaryID` S).
    /// - `Messages`, native layout: key (`ChatID` S, `SortKey` S).
    /// - `Messages`, legacy layout ([`crate::Config::legacy_index`] set): key `MessageID` S and the
    ///   named GSI on (`ChatID` S, `Timestamp` N), projecting all attributes. An existing legacy
    ///   table without that index is reported as an error naming the `update-table` fix
    ///   (`docs/dynamodb.md`): this call does not alter existing tables. With
    ///   [`crate::Config::legacy_seq_index`] also set, the same for that GSI on (`ChatID` S,
    ///   `Seq` N).
    ///
    /// An existing table whose key schema differs is [`StoreError::InvalidInput`] with the
    /// expected and found schema; a failed AWS call is translated as everywhere else.
    pub async fn create_tables(&self) -> Result<TableSetup, StoreError> {
        let mut setup = TableSetup::default();
        let chats = self.config.chats_table.clone();
        self.ensure_table(&chats, &chats_key(), &[], &mut setup)
            .await?;
        let messages = self.config.messages_table.clone();
        match &self.layout {
            Layout::Native => {
                self.ensure_table(&messages, &native_messages_key(), &[], &mut setup)
                    .await?;
            }
            Layout::Legacy { index, seq_index } => {
                let mut indexes = vec![(index.as_str(), legacy_index_key())];
                if let Some(seq_index) = seq_index {
                    indexes.push((seq_index.as_str(), legacy_seq_index_key()));
                }
                self.ensure_table(&messages, &legacy_messages_key(), &indexes, &mut setup)
                    .await?;
            }
        }
        Ok(setup)
    }

    async fn describe(&self, table: &str) -> Result<Option<TableDescription>, StoreError> {
        match self.client.describe_table().table_name(table).send().await {
            Ok(out) => Ok(out.table),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(translate("DescribeTable", err)),
        }
    }

    async fn ensure_table(
        &self,
        table: &str,
        key: &[KeyAttr],
        indexes: &[Index<'_>],
        setup: &mut TableSetup,
    ) -> Result<(), StoreError> {
        if let Some(found) = self.describe(table).await? {
            check_existing(table, &found, key, indexes)?;
            setup.existing.push(table.to_owned());
            return Ok(());
        }
        let mut request = self
            .client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(key)?));
        let mut keys: Vec<&[KeyAttr]> = vec![key];
        keys.extend(indexes.iter().map(|(_, index_key)| index_key.as_slice()));
        request = request.set_attribute_definitions(Some(definitions(&keys)?));
        for (index, index_key) in indexes {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(*index)
                    .set_key_schema(Some(key_schema(index_key)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(|e| StoreError::InvalidInput(e.to_string()))?,
            );
        }
        match request.send().await {
            Ok(_) => {
                tracing::info!(table, "created DynamoDB table");
                setup.created.push(table.to_owned());
            }
            // Created concurrently by someone else: check it like any existing table.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                let found = self
                    .describe(table)
                    .await?
                    .ok_or_else(|| unavailable(format!("table {table} vanished")))?;
                check_existing(table, &found, key, indexes)?;
                setup.existing.push(table.to_owned());
            }
            Err(err) => return Err(translate("CreateTable", err)),
        }
        if !poll_until_active(|| self.describe(table), ACTIVE_WAIT).await? {
            return Err(unavailable(format!(
                "table {table} did not become ACTIVE within {} s",
                ACTIVE_WAIT.as_secs()
            )));
        }
        Ok(())
    }
}

fn check_existing(
    table: &str,
    found: &TableDescription,
    key: &[KeyAttr],
    indexes: &[Index<'_>],
) -> Result<(), StoreError> {
    let definitions = found.attribute_definitions();
    if !same_key(found.key_schema(), definitions, key) {
        let hint = if key.len() == 2 && found.key_schema().len() == 1 {
            " (a Messages table keyed by MessageID alone needs the legacy-index mode)"
        } else {
            ""
        };
        return Err(StoreError::InvalidInput(format!(
            "table {table} exists with another key schema; expected {}{hint}",
            describe_key(key)
        )));
    }
    for (index, expected) in indexes {
        let gsi = found
            .global_secondary_indexes()
            .iter()
            .find(|g| g.index_name() == Some(*index));
        match gsi {
            None => {
                return Err(StoreError::InvalidInput(format!(
                    "table {table} has no global secondary index {index} on ({}); add it with \
                     `aws dynamodb update-table` as shown in docs/dynamodb.md",
                    describe_key(expected)
                )));
            }
            Some(g) if !same_key(g.key_schema(), definitions, expected) => {
                return Err(StoreError::InvalidInput(format!(
                    "index {index} of table {table} must be keyed by {}",
                    describe_key(expected)
                )));
            }
            Some(g)
                if g.projection().and_then(|p| p.projection_type())
                    != Some(&ProjectionType::All) =>
            {
                return Err(StoreError::InvalidInput(format!(
                    "index {index} of table {table} must project all attributes (ProjectionType ALL)"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn table(status: TableStatus) -> TableDescription {
        TableDescription::builder().table_status(status).build()
    }

    /// Polls a scripted sequence of answers with time paused; returns the outcome, the number
    /// of calls and the time that passed.
    async fn scripted(
        answers: Vec<Option<TableDescription>>,
        limit: Duration,
    ) -> (Result<bool, StoreError>, usize, Duration) {
        let answers = RefCell::new(answers.into_iter());
        let calls = RefCell::new(0);
        let start = tokio::time::Instant::now();
        let outcome = poll_until_active(
            || {
                *calls.borrow_mut() += 1;
                let next = answers.borrow_mut().next().unwrap_or(None);
                async move { Ok(next) }
            },
            limit,
        )
        .await;
        (outcome, calls.into_inner(), start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_active_table_needs_one_call_and_no_wait() {
        let (outcome, calls, waited) =
            scripted(vec![Some(table(TableStatus::Active))], ACTIVE_WAIT).await;
        assert!(outcome.unwrap());
        assert_eq!((calls, waited), (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_creating_table_is_polled_after_100_ms_then_doubling() {
        let (outcome, calls, waited) = scripted(
            vec![
                None,
                Some(table(TableStatus::Creating)),
                Some(table(TableStatus::Creating)),
                Some(table(TableStatus::Active)),
            ],
            ACTIVE_WAIT,
        )
        .await;
        assert!(outcome.unwrap());
        assert_eq!(calls, 4);
        // 100 + 200 + 400 ms, where the SDK's waiter would have slept 20 s before its second call.
        assert_eq!(waited, Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_stops_growing_at_five_seconds_and_the_wait_is_bounded() {
        let (outcome, calls, waited) = scripted(Vec::new(), Duration::from_secs(30)).await;
        assert!(!outcome.unwrap());
        assert_eq!(waited, Duration::from_secs(30));
        // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 = 6.3 s, then 5 s pauses: 6.3, 11.3, ... 26.3, 30.
        assert_eq!(calls, 7 + 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_index_still_being_built_is_waited_for() {
        let building = TableDescription::builder()
            .table_status(TableStatus::Active)
            .global_secondary_indexes(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexDescription::builder()
                    .index_status(IndexStatus::Creating)
                    .build(),
            )
            .build();
        let (outcome, calls, _) = scripted(
            vec![Some(building), Some(table(TableStatus::Active))],
            ACTIVE_WAIT,
        )
        .await;
        assert!(outcome.unwrap());
        assert_eq!(calls, 2);
    }
}
