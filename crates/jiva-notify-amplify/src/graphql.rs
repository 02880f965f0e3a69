//! The `createNotification` mutation, typed from the checked-in schema, and the hand-written
//! mapping from a core [`Notification`] to its variables.

use graphql_client::GraphQLQuery;
use jiva_core::{ConnectionType, Notification, NotificationKind};

use crate::config::{PrimaryId, SupervisorSpelling};

/// `AWSDateTime`: an ISO 8601 date-time string, kept as sent.
#[allow(clippy::upper_case_acronyms)]
type AWSDateTime = String;

/// `mutation CreateNotification` from `graphql/create_notification.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "graphql/schema.graphql",
    query_path = "graphql/create_notification.graphql",
    variables_derives = "Debug, Clone, PartialEq",
    response_derives = "Debug, Clone, PartialEq",
    skip_serializing_none
)]
pub(crate) struct CreateNotification;

pub(crate) use create_notification::{
    CreateNotificationInput, NotificationType, ResponseData, Variables,
};

/// How core notifications are spelled for this deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mapping {
    pub(crate) primary_id: PrimaryId,
    pub(crate) supervisor_spelling: SupervisorSpelling,
}

impl Mapping {
    /// The variables of the mutation for `notification`.
    pub(crate) fn variables(&self, notification: &Notification) -> Variables {
        let agent = notification.chat.agent();
        let primary_id = match self.primary_id {
            PrimaryId::FirstSegment => agent.first_segment(),
            PrimaryId::FullAgentId => agent.as_str(),
        };
        Variables {
            input: CreateNotificationInput {
                id: None,
                primary_id: primary_id.to_owned(),
                secondary_id: secondary_id(notification.chat.kind()).to_owned(),
                notification_type: self.notification_type(notification.kind),
                read: None,
            },
        }
    }

    fn notification_type(&self, kind: NotificationKind) -> NotificationType {
        match kind {
            NotificationKind::Agent => NotificationType::AGENT,
            NotificationKind::Copilot => NotificationType::COPILOT,
            NotificationKind::Supervisor => match self.supervisor_spelling {
                SupervisorSpelling::Supervisor => NotificationType::SUPERVISOR,
                SupervisorSpelling::Super => NotificationType::SUPER,
            },
        }
    }
}

/// `secondaryID`: the chat's connection type, spelled as on the wire. Written out here rather
/// than borrowed from core, so that the GraphQL contract is visible in this crate.
fn secondary_id(kind: ConnectionType) -> &'static str {
    match kind {
        ConnectionType::Supervisor => "supervisor",
        ConnectionType::Copilot => "copilot",
    }
}

/// The JSON body of one request.
pub(crate) fn request_body(variables: Variables) -> graphql_client::QueryBody<Variables> {
    CreateNotification::build_query(variables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ChatId};
    use serde_json::json;

    const UUID: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21";

    fn notification(kind: ConnectionType, what: NotificationKind) -> Notification {
        Notification {
            chat: ChatId::new(AgentId::parse(UUID).unwrap(), kind),
            kind: what,
        }
    }

    fn variables_json(mapping: Mapping, n: &Notification) -> serde_json::Value {
        serde_json::to_value(mapping.variables(n)).unwrap()
    }

    #[test]
    fn agent_message_maps_to_agent_on_the_supervisor_chat_with_the_first_segment() {
        let n = notification(ConnectionType::Supervisor, NotificationKind::Agent);
        assert_eq!(
            variables_json(Mapping::default(), &n),
            json!({"input": {"primaryID": "0b5c7e2a", "secondaryID": "supervisor", "notification_type": "AGENT"}})
        );
    }

    #[test]
    fn supervisor_message_uses_the_configured_spelling() {
        let n = notification(ConnectionType::Supervisor, NotificationKind::Supervisor);
        assert_eq!(
            variables_json(Mapping::default(), &n)["input"]["notification_type"],
            json!("SUPERVISOR")
        );
        let mapping = Mapping {
            supervisor_spelling: SupervisorSpelling::Super,
            ..Mapping::default()
        };
        assert_eq!(
            variables_json(mapping, &n)["input"]["notification_type"],
            json!("SUPER")
        );
    }

    #[test]
    fn copilot_answer_maps_to_copilot_on_the_copilot_chat() {
        let n = notification(ConnectionType::Copilot, NotificationKind::Copilot);
        assert_eq!(
            variables_json(Mapping::default(), &n),
            json!({"input": {"primaryID": "0b5c7e2a", "secondaryID": "copilot", "notification_type": "COPILOT"}})
        );
    }

    #[test]
    fn full_agent_id_option_sends_the_whole_id() {
        let n = notification(ConnectionType::Supervisor, NotificationKind::Agent);
        let mapping = Mapping {
            primary_id: PrimaryId::FullAgentId,
            ..Mapping::default()
        };
        assert_eq!(
            variables_json(mapping, &n)["input"]["primaryID"],
            json!(UUID)
        );
    }

    #[test]
    fn body_names_the_operation_and_selects_every_field_subscribers_need() {
        let n = notification(ConnectionType::Supervisor, NotificationKind::Agent);
        let body = serde_json::to_value(request_body(Mapping::default().variables(&n))).unwrap();
        assert_eq!(body["operationName"], json!("CreateNotification"));
        let query = body["query"].as_str().unwrap();
        for field in [
            "id",
            "primaryID",
            "secondaryID",
            "notification_type",
            "read",
            "createdAt",
            "updatedAt",
            "__typename",
        ] {
            assert!(
                query.split_whitespace().any(|w| w == field),
                "{field} missing from {query}"
            );
        }
    }

    #[test]
    fn response_data_decodes_an_appsync_answer() {
        let data: ResponseData = serde_json::from_value(json!({
            "createNotification": {
                "id": "n-1", "primaryID": "0b5c7e2a", "secondaryID": "supervisor",
                "notification_type": "SUPER", "read": null,
                "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
                "__typename": "Notification"
            }
        }))
        .unwrap();
        let created = data.create_notification.unwrap();
        assert_eq!(created.id, "n-1");
        assert_eq!(created.notification_type, NotificationType::SUPER);
    }
}
