//! Reading a chat from a sequence number (`MessageStore::after` and `before`): one Query from
//! the number's sort key in the native layout; the legacy layout, whose index is ordered by time,
//! walks the history from its start.

use aws_sdk_dynamodb::types::AttributeValue;
use jiva_core::{ChatId, Message, OlderPage, Seq, StoreError};

use super::{DynamoStore, Layout};
use crate::error::translate;
use crate::item::{CHAT_ID, Item, SEQ_PREFIX, SORT_KEY};

/// The native sort key of number `seq`.
fn seq_key(seq: Seq) -> String {
    format!("{SEQ_PREFIX}{:020}", seq.get())
}

impl DynamoStore {
    /// Up to `limit` of `chat`'s items on one side of `bound`'s sort key (`forward`: above it,
    /// oldest first; otherwise below it, newest first), across DynamoDB's 1 MB pages.
    async fn items_from(
        &self,
        chat: &ChatId,
        bound: Seq,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let condition = if forward {
            "#chat = :chat AND #key > :bound"
        } else {
            "#chat = :chat AND #key < :bound"
        };
        let mut items = Vec::new();
        let mut start = None;
        while items.len() < limit {
            let output = self
                .client
                .query()
                .table_name(&self.config.messages_table)
                .key_condition_expression(condition)
                .expression_attribute_names("#chat", CHAT_ID)
                .expression_attribute_names("#key", SORT_KEY)
                .expression_attribute_values(":chat", AttributeValue::S(chat.canonical()))
                .expression_attribute_values(":bound", AttributeValue::S(seq_key(bound)))
                .scan_index_forward(forward)
                // Strongly consistent: an acknowledged append is visible to the next read.
                .consistent_read(true)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| translate("Query", e))?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        Ok(items)
    }

    /// `MessageStore::after`.
    pub(super) async fn seek_after(
        &self,
        chat: &ChatId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        if !matches!(self.layout, Layout::Native) {
            return jiva_core::after_by_walking(self, chat, after, limit).await;
        }
        let items = self.items_from(chat, after, true, limit).await?;
        Ok(Self::read_items(chat, &items))
    }

    /// `MessageStore::before`: numbered items below `before` and, in chat order before them,
    /// the unnumbered items of before sequence numbers (their sort keys sort first).
    pub(super) async fn seek_before(
        &self,
        chat: &ChatId,
        before: Seq,
        limit: usize,
    ) -> Result<OlderPage, StoreError> {
        if !matches!(self.layout, Layout::Native) {
            return jiva_core::before_by_walking(self, chat, before, limit).await;
        }
        let items = self.items_from(chat, before, false, limit + 1).await?;
        let has_older = items.len() > limit;
        let mut messages = Self::read_items(chat, &items);
        messages.truncate(limit);
        messages.reverse();
        Ok(OlderPage {
            messages,
            has_older,
        })
    }
}
