//! Idempotency claims (native layout): a message whose id a client named
//! ([`MessageId::is_for_client`](jiva_core::MessageId::is_for_client), protocol v1's
//! `client_id`) is written in one `TransactWriteItems` with a claim of its id, each put on the
//! condition that its key is new. A resend, on any server and however long after, finds the
//! claim: the transaction writes nothing and the claim holds the number the message has.
//!
//! The claim lives in a partition of its own (`ChatID` `"claim#{chat}"`, see
//! [`CLAIM_PREFIX`](crate::CLAIM_PREFIX)), never in its chat's: every read of a chat queries the
//! chat's own partition, so no history page, replay or seek can meet a claim, whatever its
//! sort-key condition. Server-made (v7) ids are never sent twice by a client: their appends keep
//! the single conditional put.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use jiva_core::{Message, Seq, StoreError};

use super::{Claim, DynamoStore, unavailable};
use crate::error::{Problem, translate};
use crate::item::{self, CHAT_ID, Item};

/// The cancellation code of a put whose condition failed.
const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// The cancellation code of an item another transaction was writing at the same time.
const TRANSACTION_CONFLICT: &str = "TransactionConflict";

/// Cancellation codes that mean "slow down".
const THROTTLED: &[&str] = &["ThrottlingError", "ProvisionedThroughputExceeded"];

impl DynamoStore {
    /// A put of `item` into `Messages` on the condition that its key is new, returning the
    /// holder when it is not.
    fn new_put(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.config.messages_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", CHAT_ID)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| unavailable(format!("TransactWriteItems request: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Writes `message` at number `seq` and the claim of its id, both or neither (one
    /// `TransactWriteItems`; the SDK gives it an idempotency token, so its own retries of a
    /// transaction that went through succeed without writing again).
    ///
    /// [`Claim::Written`] when both were written; [`Claim::Stored`] with the message's number
    /// when its id was claimed before (nothing written); [`Claim::Held`] when another message
    /// holds `seq` (or another transaction was writing one of the two items at that moment:
    /// holder unknown), so the caller tries another number.
    pub(super) async fn claim_with_id(
        &self,
        message: &Message,
        seq: Seq,
    ) -> Result<Claim, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .transact_items(self.new_put(item::message_item(message, seq, true))?)
            .transact_items(self.new_put(item::claim_item(message, seq))?)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Claim::Written),
            Err(err) => err,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        else {
            return Err(translate("TransactWriteItems", err));
        };
        let reasons = cancelled.cancellation_reasons();
        let code = |i: usize| reasons.get(i).and_then(CancellationReason::code);
        if code(1) == Some(CONDITION_FAILED) {
            let known = reasons
                .get(1)
                .and_then(CancellationReason::item)
                .and_then(|claim| item::seq(claim).ok().flatten());
            let seq = match known {
                Some(seq) => seq,
                None => self.read_claim(message).await?,
            };
            return Ok(Claim::Stored(seq));
        }
        if code(0) == Some(CONDITION_FAILED) {
            return Ok(Claim::Held(
                reasons
                    .first()
                    .and_then(CancellationReason::item)
                    .map(|holder| item::item_message_id(holder).to_owned()),
            ));
        }
        if reasons
            .iter()
            .any(|r| r.code() == Some(TRANSACTION_CONFLICT))
        {
            return Ok(Claim::Held(None));
        }
        if reasons
            .iter()
            .any(|r| r.code().is_some_and(|c| THROTTLED.contains(&c)))
        {
            return Err(StoreError::Throttled(Box::new(Problem(
                "TransactWriteItems cancelled: throttled".to_owned(),
            ))));
        }
        Err(translate("TransactWriteItems", err))
    }

    /// The number the claim of `message`'s id holds (a strongly consistent GetItem), for a
    /// server that does not return the claim with the failed condition.
    async fn read_claim(&self, message: &Message) -> Result<Seq, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.messages_table)
            .set_key(Some(item::claim_key(&message.chat, message.id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| translate("GetItem", e))?;
        output
            .item
            .as_ref()
            .and_then(|claim| item::seq(claim).ok().flatten())
            .ok_or_else(|| {
                StoreError::Conflict(Box::new(Problem(
                    "the message id is claimed, but the claim cannot be read".to_owned(),
                )))
            })
    }
}
