//! One delivery through `AmplifyClient`: what goes on the wire, and what is retried.

use std::collections::BTreeSet;
use std::time::Duration;

use jiva_core::{ConnectionType, NotificationKind, NotifyError};
use jiva_notify_amplify::{AmplifyClient, PrimaryId, SupervisorSpelling};
use serde_json::json;

use crate::appsync::{Reply, StandIn, validation_error};
use crate::{API_KEY, UUID, agent_message, config, notification};

#[tokio::test]
async fn sends_the_api_key_json_and_exactly_the_three_input_variables() {
    let mut appsync = StandIn::ok().await;
    let client = AmplifyClient::new(&config(&appsync.url)).unwrap();

    client.deliver(&agent_message(UUID)).await.unwrap();

    let requests = appsync.received();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.api_key.as_deref(), Some(API_KEY));
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        request.variables(),
        &json!({"input": {"primaryID": "0b5c7e2a", "secondaryID": "supervisor", "notification_type": "AGENT"}})
    );
    assert_eq!(request.body["operationName"], json!("CreateNotification"));
}

#[tokio::test]
async fn the_mutation_selects_exactly_the_fields_subscribers_need() {
    let mut appsync = StandIn::ok().await;
    let client = AmplifyClient::new(&config(&appsync.url)).unwrap();

    client.deliver(&agent_message(UUID)).await.unwrap();

    let request = appsync.next_request().await;
    let query = request.body["query"].as_str().unwrap();
    let open = query.find("createNotification(input: $input) {").unwrap();
    let rest = &query[open..];
    let selection = &rest[rest.find('{').unwrap() + 1..rest.find('}').unwrap()];
    let fields: BTreeSet<&str> = selection
        .split_whitespace()
        .filter(|w| !w.starts_with('#'))
        .collect();
    let wanted: BTreeSet<&str> = [
        "id",
        "primaryID",
        "secondaryID",
        "notification_type",
        "read",
        "createdAt",
        "updatedAt",
        "__typename",
    ]
    .into();
    assert_eq!(fields, wanted, "{query}");
    assert!(query.contains("mutation CreateNotification($input: CreateNotificationInput!)"));
}

#[tokio::test]
async fn supervisor_and_copilot_notifications_use_their_types_and_chats() {
    let mut appsync = StandIn::ok().await;
    let client = AmplifyClient::new(&config(&appsync.url)).unwrap();

    client
        .deliver(&notification(
            UUID,
            ConnectionType::Supervisor,
            NotificationKind::Supervisor,
        ))
        .await
        .unwrap();
    client
        .deliver(&notification(
            UUID,
            ConnectionType::Copilot,
            NotificationKind::Copilot,
        ))
        .await
        .unwrap();

    let requests = appsync.received();
    assert_eq!(
        requests[0].variables(),
        &json!({"input": {"primaryID": "0b5c7e2a", "secondaryID": "supervisor", "notification_type": "SUPERVISOR"}})
    );
    assert_eq!(
        requests[1].variables(),
        &json!({"input": {"primaryID": "0b5c7e2a", "secondaryID": "copilot", "notification_type": "COPILOT"}})
    );
}

#[tokio::test]
async fn super_spelling_and_full_agent_id_go_on_the_wire_when_configured() {
    let mut appsync = StandIn::ok().await;
    let mut config = config(&appsync.url);
    config.supervisor_spelling = SupervisorSpelling::Super;
    config.primary_id = PrimaryId::FullAgentId;
    let client = AmplifyClient::new(&config).unwrap();

    client
        .deliver(&notification(
            UUID,
            ConnectionType::Supervisor,
            NotificationKind::Supervisor,
        ))
        .await
        .unwrap();

    assert_eq!(
        appsync.next_request().await.variables(),
        &json!({"input": {"primaryID": UUID, "secondaryID": "supervisor", "notification_type": "SUPER"}})
    );
}

#[tokio::test]
async fn a_500_is_retried_and_the_retry_delivers() {
    let mut appsync = StandIn::start(
        vec![Reply::Status(500, json!({"message": "oops"}))],
        Reply::Created,
    )
    .await;
    let client = AmplifyClient::new(&config(&appsync.url)).unwrap();

    client.deliver(&agent_message(UUID)).await.unwrap();

    let requests = appsync.received();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body);
}

#[tokio::test]
async fn throttling_and_unavailability_are_retried() {
    let mut appsync = StandIn::start(
        vec![Reply::Status(429, json!({})), Reply::Status(503, json!({}))],
        Reply::Created,
    )
    .await;
    let client = AmplifyClient::new(&config(&appsync.url)).unwrap();

    client.deliver(&agent_message(UUID)).await.unwrap();

    assert_eq!(appsync.received().len(), 3);
}

#[tokio::test]
async fn a_graphql_validation_error_with_status_200_is_rejected_without_retry() {
    let mut appsync = StandIn::start(vec![validation_error()], Reply::Created).await;
    let client = AmplifyClient::new(&config(&appsync.url)).unwrap();

    let result = client.deliver(&agent_message(UUID)).await;

    let Err(NotifyError::Rejected(reason)) = result else {
        panic!("expected a rejection, got {result:?}")
    };
    assert!(reason.starts_with("ValidationError: "), "{reason}");
    assert_eq!(appsync.received().len(), 1);
}

#[tokio::test]
async fn a_client_error_is_rejected_without_retry() {
    let mut appsync = StandIn::start(
        vec![Reply::Status(
            401,
            json!({"errors": [{"errorType": "UnauthorizedException", "message": "You are not authorized to make this call."}]}),
        )],
        Reply::Created,
    )
    .await;
    let client = AmplifyClient::new(&config(&appsync.url)).unwrap();

    let result = client.deliver(&agent_message(UUID)).await;

    assert!(
        matches!(&result, Err(NotifyError::Rejected(r)) if r.contains("UnauthorizedException")),
        "{result:?}"
    );
    assert_eq!(appsync.received().len(), 1);
}

#[tokio::test]
async fn retries_stop_after_the_configured_number() {
    let mut appsync = StandIn::start(Vec::new(), Reply::Status(502, json!({}))).await;
    let mut config = config(&appsync.url);
    config.retry.max_retries = 2;
    let client = AmplifyClient::new(&config).unwrap();

    let result = client.deliver(&agent_message(UUID)).await;

    assert!(
        matches!(result, Err(NotifyError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(appsync.received().len(), 3);
}

#[tokio::test]
async fn a_request_time_out_is_retried() {
    let mut appsync = StandIn::start(vec![Reply::Hang], Reply::Created).await;
    let mut config = config(&appsync.url);
    // Only the first request hangs; this limit ends it.
    config.request_timeout = Duration::from_millis(200);
    let client = AmplifyClient::new(&config).unwrap();

    client.deliver(&agent_message(UUID)).await.unwrap();

    assert_eq!(appsync.received().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_reported_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    drop(listener);
    let client = AmplifyClient::new(&config(&url)).unwrap();

    let result = client.deliver(&agent_message(UUID)).await;

    let Err(NotifyError::Unavailable(cause)) = result else {
        panic!("expected unavailable, got {result:?}")
    };
    assert!(
        cause.to_string().contains("gave up after 4 attempts"),
        "{cause}"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_the_key_goes_nowhere_else() {
    let mut appsync = StandIn::start(vec![Reply::RedirectHere], Reply::Created).await;
    let client = AmplifyClient::new(&config(&appsync.url)).unwrap();

    let result = client.deliver(&agent_message(UUID)).await;

    assert!(
        matches!(&result, Err(NotifyError::Rejected(r)) if r == "HTTP 307"),
        "{result:?}"
    );
    assert_eq!(appsync.received().len(), 1);
}
