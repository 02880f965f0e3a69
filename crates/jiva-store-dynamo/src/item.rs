//! DynamoDB items to and from core types, by hand (PROTOCOL.md §5).
//!
//! The attribute names and types here are a contract with other tools that read the same tables:
//! never rename one. The attributes this crate adds beyond §5 are [`SEQ`] (every new message) and
//! [`SORT_KEY`] (native key design only); on `Chats`, [`LAST_SEQ`] (legacy key design only). The
//! native design also writes idempotency claims, items that are not messages, in partitions of
//! their own ([`CLAIM_PREFIX`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiva_core::{Body, ChatId, Message, MessageId, Sender, Seq, Timestamp};

/// A raw item, as the SDK hands it over.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// `Chats`: the whole agent id (S).
pub const AGENT_ID: &str = "AgentID";
/// `Chats`: `supervisor` or `copilot` (S).
pub const SECONDARY_ID: &str = "SecondaryID";
/// `Messages`: the message's UUID (S).
pub const MESSAGE_ID: &str = "MessageID";
/// `Messages`: the canonical chat id `"{agent}-{kind}"` (S).
pub const CHAT_ID: &str = "ChatID";
/// `Messages`: `agent`, `supervisor` or `Copilot` (S).
pub const SENDER: &str = "Sender";
/// `Messages`: epoch milliseconds (N).
pub const TIMESTAMP: &str = "Timestamp";
/// `Messages`: the text of a user message (S).
pub const MESSAGE: &str = "Message";
/// `Messages`: `"Combined"` on a copilot answer (S). Its presence alone makes an item an answer.
pub const ACTION: &str = "Action";
/// `Messages`: the text of a copilot answer (S).
pub const OUTPUT: &str = "Output";
/// `Messages`, native key design only: the sort key (S). New messages: `"seq#{seq:020}"`
/// ([`SEQ_PREFIX`]); messages stored before sequence numbers: `"{millis:020}#{message id}"`, which
/// sort before every `seq#` key.
pub const SORT_KEY: &str = "SortKey";
/// `Messages`: the message's sequence number in its chat (N). Absent on messages stored before
/// sequence numbers.
pub const SEQ: &str = "Seq";
/// `Chats`, legacy key design only: the last sequence number given in the chat (N).
pub const LAST_SEQ: &str = "LastSeq";
/// `Chats`, legacy key design only: the ids of the chat's newest messages (L of S), one per
/// number taken, the last one for [`LAST_SEQ`]; trimmed to the newest
/// [`RECENT_IDS`](crate::RECENT_IDS) once twice as long.
pub const RECENT: &str = "Recent";
/// The prefix of the sort keys of numbered messages (native key design).
pub const SEQ_PREFIX: &str = "seq#";
/// The prefix of the `ChatID` of an idempotency claim (native key design): the claim of message
/// `id` in chat `c` is the item (`ChatID` `"claim#{c}"`, `SortKey` `"{id}"`, [`SEQ`]), written
/// in one transaction with the message. `#` is never in a chat id, so no chat's partition holds
/// a claim and no read of a chat can meet one.
pub const CLAIM_PREFIX: &str = "claim#";
/// The value of [`ACTION`] this crate writes.
pub const COMBINED: &str = "Combined";

/// Why an item could not be written or read as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ItemError {
    /// A required attribute is absent.
    #[error("attribute {0} is missing")]
    Missing(&'static str),
    /// An attribute has the wrong DynamoDB type or an unreadable value.
    #[error("attribute {0} is malformed")]
    Malformed(&'static str),
}

/// The native sort key of message number `seq`: [`SEQ_PREFIX`] and the zero-padded number, so
/// string order is number order, after every key of a message stored before numbers
/// (`"{millis:020}#{id}"` starts with a digit).
pub(crate) fn seq_sort_key(seq: Seq) -> String {
    format!("{SEQ_PREFIX}{:020}", seq.get())
}

/// The `Chats` item of a chat.
pub(crate) fn chat_item(chat: &ChatId) -> Item {
    HashMap::from([
        (
            AGENT_ID.to_owned(),
            AttributeValue::S(chat.agent().as_str().to_owned()),
        ),
        (
            SECONDARY_ID.to_owned(),
            AttributeValue::S(chat.kind().as_str().to_owned()),
        ),
    ])
}

/// The `Messages` item of message number `seq`; with `with_sort_key` (native design) it carries
/// [`SORT_KEY`].
pub(crate) fn message_item(message: &Message, seq: Seq, with_sort_key: bool) -> Item {
    let mut item = HashMap::from([
        (
            MESSAGE_ID.to_owned(),
            AttributeValue::S(message.id.to_string()),
        ),
        (
            CHAT_ID.to_owned(),
            AttributeValue::S(message.chat.canonical()),
        ),
        (
            SENDER.to_owned(),
            AttributeValue::S(message.sender.as_str().to_owned()),
        ),
        (
            TIMESTAMP.to_owned(),
            AttributeValue::N(message.timestamp.as_millis().to_string()),
        ),
        (SEQ.to_owned(), AttributeValue::N(seq.get().to_string())),
    ]);
    match &message.body {
        Body::Text(text) => {
            item.insert(MESSAGE.to_owned(), AttributeValue::S(text.clone()));
        }
        Body::CopilotAnswer(output) => {
            item.insert(ACTION.to_owned(), AttributeValue::S(COMBINED.to_owned()));
            item.insert(OUTPUT.to_owned(), AttributeValue::S(output.clone()));
        }
    }
    if with_sort_key {
        item.insert(SORT_KEY.to_owned(), AttributeValue::S(seq_sort_key(seq)));
    }
    item
}

/// The key of the idempotency claim of message `id` in `chat` (see [`CLAIM_PREFIX`]).
pub(crate) fn claim_key(chat: &ChatId, id: MessageId) -> Item {
    HashMap::from([
        (
            CHAT_ID.to_owned(),
            AttributeValue::S(format!("{CLAIM_PREFIX}{}", chat.canonical())),
        ),
        (SORT_KEY.to_owned(), AttributeValue::S(id.to_string())),
    ])
}

/// The idempotency claim of `message`, stored with number `seq`.
pub(crate) fn claim_item(message: &Message, seq: Seq) -> Item {
    let mut item = claim_key(&message.chat, message.id);
    item.insert(SEQ.to_owned(), AttributeValue::N(seq.get().to_string()));
    item
}

/// Reads a `Messages` item of `chat` (the chat that was queried: the `ChatID` string is never
/// split to recover the agent id).
///
/// Lenient where older items vary: the sender of a copilot answer is always
/// [`Sender::Copilot`], whatever its `Sender` says; `Action` may hold any value; a `Timestamp`
/// written with a fraction is floored to the millisecond.
pub(crate) fn message_from_item(item: &Item, chat: &ChatId) -> Result<Message, ItemError> {
    let id = string(item, MESSAGE_ID)?;
    let id = MessageId::parse(id).map_err(|_| ItemError::Malformed(MESSAGE_ID))?;
    let timestamp = timestamp(item)?;
    let (sender, body) = if item.contains_key(ACTION) {
        (
            Sender::Copilot,
            Body::CopilotAnswer(string(item, OUTPUT)?.to_owned()),
        )
    } else {
        let sender =
            Sender::parse(string(item, SENDER)?).map_err(|_| ItemError::Malformed(SENDER))?;
        (sender, Body::Text(string(item, MESSAGE)?.to_owned()))
    };
    Ok(Message {
        id,
        chat: chat.clone(),
        sender,
        timestamp,
        body,
        seq: seq(item)?,
    })
}

/// The [`SEQ`] of an item; `None` when it has none (stored before sequence numbers).
pub(crate) fn seq(item: &Item) -> Result<Option<Seq>, ItemError> {
    match item.get(SEQ) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map(|n| Some(Seq::new(n)))
            .map_err(|_| ItemError::Malformed(SEQ)),
        Some(_) => Err(ItemError::Malformed(SEQ)),
    }
}

/// The `MessageID` of an item, for logs, when it has a readable one.
pub(crate) fn item_message_id(item: &Item) -> &str {
    match item.get(MESSAGE_ID) {
        Some(AttributeValue::S(id)) => id,
        _ => "<none>",
    }
}

fn string<'a>(item: &'a Item, name: &'static str) -> Result<&'a str, ItemError> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        Some(_) => Err(ItemError::Malformed(name)),
        None => Err(ItemError::Missing(name)),
    }
}

pub(crate) fn timestamp(item: &Item) -> Result<Timestamp, ItemError> {
    let raw = match item.get(TIMESTAMP) {
        Some(AttributeValue::N(n)) => n,
        Some(_) => return Err(ItemError::Malformed(TIMESTAMP)),
        None => return Err(ItemError::Missing(TIMESTAMP)),
    };
    if let Ok(millis) = raw.parse::<i64>() {
        return Ok(Timestamp::from_millis(millis));
    }
    // DynamoDB numbers may carry a fraction or an exponent; accept them when they fit.
    match raw.parse::<f64>() {
        Ok(f) if f.is_finite() && f.abs() < 9.0e15 => {
            #[allow(clippy::cast_possible_truncation)]
            let millis = f.floor() as i64;
            Ok(Timestamp::from_millis(millis))
        }
        _ => Err(ItemError::Malformed(TIMESTAMP)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ConnectionType};

    const AGENT: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21";

    fn chat(kind: ConnectionType) -> ChatId {
        ChatId::new(AgentId::parse(AGENT).unwrap(), kind)
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn sample(body: Body, sender: Sender) -> Message {
        Message {
            id: MessageId::parse("01936f3e-0000-7000-8000-000000000001").unwrap(),
            chat: chat(ConnectionType::Copilot),
            sender,
            timestamp: Timestamp::from_millis(1_718_000_000_123),
            body,
            seq: Some(Seq::new(42)),
        }
    }

    #[test]
    fn user_message_item_has_exactly_the_protocol_attributes() {
        let m = sample(Body::Text("hi }".into()), Sender::Agent);
        let item = message_item(&m, Seq::new(42), false);
        let expected: Item = HashMap::from([
            (MESSAGE_ID.into(), s("01936f3e-0000-7000-8000-000000000001")),
            (CHAT_ID.into(), s(&format!("{AGENT}-copilot"))),
            (SENDER.into(), s("agent")),
            (TIMESTAMP.into(), AttributeValue::N("1718000000123".into())),
            (MESSAGE.into(), s("hi }")),
            (SEQ.into(), AttributeValue::N("42".into())),
        ]);
        assert_eq!(item, expected);
        assert_eq!(message_from_item(&item, &m.chat).unwrap(), m);
    }

    #[test]
    fn copilot_answer_item_has_action_and_output_and_no_message() {
        let m = sample(Body::CopilotAnswer("line\nanswer".into()), Sender::Copilot);
        let item = message_item(&m, Seq::new(42), true);
        assert_eq!(item.get(ACTION), Some(&s("Combined")));
        assert_eq!(item.get(OUTPUT), Some(&s("line\nanswer")));
        assert_eq!(item.get(SENDER), Some(&s("Copilot")));
        assert!(!item.contains_key(MESSAGE));
        assert_eq!(item.get(SORT_KEY), Some(&s("seq#00000000000000000042")));
        assert_eq!(message_from_item(&item, &m.chat).unwrap(), m);
    }

    #[test]
    fn an_item_is_a_copilot_answer_exactly_when_it_has_action() {
        let c = chat(ConnectionType::Copilot);
        let mut item: Item = HashMap::from([
            (MESSAGE_ID.into(), s("6f1c1b9e-3c1a-4d0e-9a57-3c3f0e6a9d21")),
            (CHAT_ID.into(), s(&c.canonical())),
            (SENDER.into(), s("copilot")),
            (TIMESTAMP.into(), AttributeValue::N("5".into())),
            (ACTION.into(), s("SomethingOld")),
            (OUTPUT.into(), s("answer")),
            (MESSAGE.into(), s("ignored")),
        ]);
        let m = message_from_item(&item, &c).unwrap();
        assert_eq!(m.body, Body::CopilotAnswer("answer".into()));
        assert_eq!(m.sender, Sender::Copilot);
        item.remove(ACTION);
        item.insert(SENDER.into(), s("agent"));
        let m = message_from_item(&item, &c).unwrap();
        assert_eq!(m.body, Body::Text("ignored".into()));
        assert_eq!(m.sender, Sender::Agent);
    }

    #[test]
    fn unreadable_items_are_rejected_with_the_attribute_named() {
        let c = chat(ConnectionType::Supervisor);
        let good = message_item(
            &sample(Body::Text("x".into()), Sender::Supervisor),
            Seq::new(1),
            false,
        );
        let mut bad = good.clone();
        bad.remove(MESSAGE);
        assert_eq!(
            message_from_item(&bad, &c),
            Err(ItemError::Missing(MESSAGE))
        );
        let mut bad = good.clone();
        bad.insert(TIMESTAMP.into(), s("1718000000123"));
        assert_eq!(
            message_from_item(&bad, &c),
            Err(ItemError::Malformed(TIMESTAMP))
        );
        let mut bad = good.clone();
        bad.insert(MESSAGE_ID.into(), s("not-a-uuid"));
        assert_eq!(
            message_from_item(&bad, &c),
            Err(ItemError::Malformed(MESSAGE_ID))
        );
        let mut bad = good.clone();
        bad.insert(SENDER.into(), s("HUMAN"));
        assert_eq!(
            message_from_item(&bad, &c),
            Err(ItemError::Malformed(SENDER))
        );
        let mut bad = good.clone();
        bad.insert(SEQ.into(), AttributeValue::N("-1".into()));
        assert_eq!(message_from_item(&bad, &c), Err(ItemError::Malformed(SEQ)));
        let mut bad = good;
        bad.insert(ACTION.into(), s("Combined"));
        assert_eq!(message_from_item(&bad, &c), Err(ItemError::Missing(OUTPUT)));
    }

    #[test]
    fn fractional_timestamps_are_floored() {
        let c = chat(ConnectionType::Supervisor);
        let mut item = message_item(
            &sample(Body::Text("x".into()), Sender::Agent),
            Seq::new(1),
            false,
        );
        item.insert(
            TIMESTAMP.into(),
            AttributeValue::N("1718000000123.9".into()),
        );
        let m = message_from_item(&item, &c).unwrap();
        assert_eq!(m.timestamp, Timestamp::from_millis(1_718_000_000_123));
    }

    #[test]
    fn sequence_sort_keys_order_by_number_after_every_earlier_key() {
        let k = |n| seq_sort_key(Seq::new(n));
        assert!(k(9) < k(10));
        assert!(k(999_999_999_999) < k(1_000_000_000_000));
        assert!(k(1) < k(u64::MAX));
        // Keys of messages stored before numbers: 20 digits of milliseconds, '#', the id.
        let earlier = "99999999999999999999#ffffffff-0000-4000-8000-000000000000";
        assert!(earlier < k(1).as_str());
    }

    #[test]
    fn chat_item_keeps_the_whole_agent_id() {
        let item = chat_item(&chat(ConnectionType::Supervisor));
        assert_eq!(item.get(AGENT_ID), Some(&s(AGENT)));
        assert_eq!(item.get(SECONDARY_ID), Some(&s("supervisor")));
        assert_eq!(item.len(), 2);
    }
}
