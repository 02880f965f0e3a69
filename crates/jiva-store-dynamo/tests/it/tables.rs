//! `create_tables` leaves every table it creates, and the legacy index, `ACTIVE`.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{IndexStatus, TableStatus};
use jiva_store_dynamo::{Config, DynamoStore};

use crate::support::{LEGACY_INDEX, dynamo, legacy_config};

/// The status of `table` and of each of its global secondary indexes, by name.
async fn statuses(client: &Client, table: &str) -> (TableStatus, Vec<(String, IndexStatus)>) {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let indexes = described
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            (
                g.index_name().unwrap().to_owned(),
                g.index_status().unwrap().clone(),
            )
        })
        .collect();
    (described.table_status().unwrap().clone(), indexes)
}

async fn create(config: &Config) -> Client {
    let client = dynamo().client(config);
    let store = DynamoStore::from_client(client.clone(), config.clone());
    let setup = store.create_tables().await.unwrap();
    assert_eq!(
        setup.created,
        vec![config.chats_table.clone(), config.messages_table.clone()]
    );
    client
}

#[tokio::test]
async fn create_tables_returns_with_both_tables_active() {
    let config = dynamo().config();
    let client = create(&config).await;
    for table in [&config.chats_table, &config.messages_table] {
        assert_eq!(
            statuses(&client, table).await,
            (TableStatus::Active, Vec::new())
        );
    }
}

#[tokio::test]
async fn create_tables_returns_with_the_legacy_table_and_its_index_active() {
    let config = legacy_config();
    let client = create(&config).await;
    assert_eq!(
        statuses(&client, &config.messages_table).await,
        (
            TableStatus::Active,
            vec![(LEGACY_INDEX.to_owned(), IndexStatus::Active)]
        )
    );
}
