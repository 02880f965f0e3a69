//! A v1 socket's catch-up: the latest page (fresh) or what came after `since` (resume), or a
//! `reload` when the gap cannot be filled; then it joins its chat's room with no gap and no
//! duplicate, as a v0 socket does (`conn::replay`): passes over the store before joining, each
//! from where the previous one ended, then one last pass for what was stored below the room's
//! next number; live copies of what was replayed are dropped by the writer.

use std::collections::BTreeSet;

use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use jiva_chat::Subscriber;
use jiva_core::{ChatId, Message, Seq, Timestamp};
use jiva_protocol::{ErrorCode, ErrorFrame, Latest, Live, Reload, ReloadCode, ServerFrame};

use super::encode;
use crate::conn::{Ahead, Step};
use crate::frames::Frame;
use crate::signals::Flag;
use crate::state::State;

type Sink = SplitSink<WebSocket, WsMessage>;

/// Catch-up passes before joining (as v0's).
const CATCH_UP_PASSES: usize = 8;

/// Replayed numbers remembered to drop their live copies (as v0's).
const REPLAYED_KEPT: usize = 4096;

/// Messages read per store call while replaying.
const PAGE: usize = 200;

/// What the catch-up sent.
#[derive(Default)]
pub(super) struct Replayed {
    /// The newest number sent.
    pub last: Option<Seq>,
    /// The newest numbers sent (their live copies are dropped).
    pub seqs: BTreeSet<Seq>,
    /// The resume point asked for: the client has every number up to it, so their live
    /// copies are dropped too (a frame the room shows late, e.g. a gap filled after another
    /// node died, would otherwise reach a resumed client twice).
    pub since: Option<Seq>,
    /// Read, but held for the room (see [`Ahead`]).
    ahead: Ahead,
}

impl Replayed {
    /// Whether the client already has `seq` (sent by the catch-up, or at or below its resume
    /// point): its live copy is not sent.
    fn has(&self, seq: Seq) -> bool {
        self.seqs.contains(&seq) || self.since.is_some_and(|since| seq <= since)
    }

    fn saw(&mut self, seq: Option<Seq>) {
        let Some(seq) = seq else { return };
        self.seqs.insert(seq);
        if self.seqs.len() > REPLAYED_KEPT {
            self.seqs.pop_first();
        }
        if self.last.is_none_or(|last| seq > last) {
            self.last = Some(seq);
        }
    }
}

async fn send(sink: &mut Sink, frame: &ServerFrame) -> Result<(), axum::Error> {
    sink.feed(WsMessage::Text(encode::text(frame))).await
}

fn history_unavailable() -> ServerFrame {
    ServerFrame::Error(ErrorFrame::new(
        ErrorCode::HistoryUnavailable,
        "history unavailable",
        None,
    ))
}

/// How the connection starts.
enum Start {
    Fresh,
    Resume(Seq),
}

/// Sends the catch-up and joins the room (`subscriber.1` is set then), recording what it
/// showed in `replayed` as it goes. Ends with `live`.
pub(super) async fn run(
    state: &State,
    chat: &ChatId,
    sink: &mut Sink,
    since: Option<Seq>,
    subscriber: (Subscriber<Frame>, &Flag),
    replayed: &mut Replayed,
) -> Result<(), axum::Error> {
    let mut available = true;
    let start = match since {
        None => Start::Fresh,
        Some(since) => match decide(state, chat, since).await {
            Ok(Ok(())) => Start::Resume(since),
            Ok(Err((code, reason))) => {
                metrics::counter!("jiva_v1_reloads_total", "code" => code_label(code)).increment(1);
                send(
                    sink,
                    &ServerFrame::Reload(Reload {
                        code,
                        reason,
                        since: since.get(),
                    }),
                )
                .await?;
                Start::Fresh
            }
            Err(()) => {
                send(sink, &history_unavailable()).await?;
                available = false;
                Start::Fresh
            }
        },
    };
    if available {
        match start {
            Start::Fresh => available = latest(state, chat, sink, replayed).await?,
            Start::Resume(since) => {
                replayed.last = Some(since);
                replayed.since = Some(since);
            }
        }
    }
    if available {
        for _ in 0..CATCH_UP_PASSES {
            match pass(state, chat, sink, replayed, None).await? {
                Some(0) => break,
                Some(_) => {}
                None => {
                    available = false;
                    break;
                }
            }
        }
    }
    let room_next = state.chats.join(chat, subscriber.0).await;
    subscriber.1.set();
    if available
        && pass(state, chat, sink, replayed, Some(room_next))
            .await?
            .is_some()
    {
        let last = replayed.last.map_or(0, Seq::get);
        let next = state.chats.replayed(chat, last, &replayed.ahead.take());
        // As v0's (`conn::replay`): another socket may have told the room a later start.
        if room_next.is_none() && next.is_some_and(|next| next.get() > last + 1) {
            pass(state, chat, sink, replayed, Some(next)).await?;
        }
    }
    send(
        sink,
        &ServerFrame::Live(Live {
            seq: replayed.last.map(Seq::get),
        }),
    )
    .await?;
    sink.flush().await?;
    Ok(())
}

fn code_label(code: ReloadCode) -> &'static str {
    match code {
        ReloadCode::UnknownPoint => "unknown_point",
        ReloadCode::TooFarBehind => "too_far_behind",
    }
}

/// Whether a resume from `since` can be served: `Ok(Err(..))` says why not; `Err(())` when the
/// store failed.
async fn decide(
    state: &State,
    chat: &ChatId,
    since: Seq,
) -> Result<Result<(), (ReloadCode, String)>, ()> {
    let newest = match state.chats.store().recent(chat, 1).await {
        Ok(newest) => newest,
        Err(e) => {
            tracing::error!(error = %e, "reading the newest message failed");
            return Err(());
        }
    };
    let head = newest.last().and_then(|m| m.seq).map_or(0, Seq::get);
    let max = state.config.v1_resume_max as u64;
    Ok(if since.get() > head {
        Err((
            ReloadCode::UnknownPoint,
            format!("this chat has no message {since} yet"),
        ))
    } else if head - since.get() > max {
        Err((
            ReloadCode::TooFarBehind,
            format!("more than {max} messages came after {since}"),
        ))
    } else {
        Ok(())
    })
}

/// Sends the `latest` page; false when the store failed (the socket was told).
async fn latest(
    state: &State,
    chat: &ChatId,
    sink: &mut Sink,
    replayed: &mut Replayed,
) -> Result<bool, axum::Error> {
    let want = jiva_protocol::LATEST_DEFAULT as usize;
    let mut messages = match state.chats.store().recent(chat, want + 1).await {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(error = %e, "reading the latest messages failed");
            send(sink, &history_unavailable()).await?;
            return Ok(false);
        }
    };
    let has_older = messages.len() > want;
    if has_older {
        messages.remove(0);
    }
    for m in &messages {
        replayed.saw(m.seq);
    }
    send(
        sink,
        &ServerFrame::Latest(Latest {
            messages: messages.iter().map(encode::message).collect(),
            has_older,
        }),
    )
    .await?;
    Ok(true)
}

/// One pass over what was stored after `replayed.last`: before joining (`room_next` `None`) it
/// stops at a missing number (an append may still be in flight); the last pass sends every
/// message numbered below the room's next one (or, when the room does not know it, holds what
/// lies past a number that may still arrive for the room: [`Ahead`]). Returns how many it
/// sent, or `None` when the store failed (the socket was told).
async fn pass(
    state: &State,
    chat: &ChatId,
    sink: &mut Sink,
    replayed: &mut Replayed,
    room_next: Option<Option<Seq>>,
) -> Result<Option<usize>, axum::Error> {
    let below = room_next.flatten();
    let mut sent = 0;
    let now = Timestamp::now();
    loop {
        let after = replayed
            .ahead
            .newest()
            .or(replayed.last)
            .unwrap_or(Seq::new(0));
        let page: Vec<Message> = match state.chats.store().after(chat, after, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "reading history failed");
                send(sink, &history_unavailable()).await?;
                return Ok(None);
            }
        };
        let full = page.len() >= PAGE;
        for m in &page {
            let Some(seq) = m.seq else { continue };
            if below.is_some_and(|below| seq >= below) {
                sink.flush().await?;
                return Ok(Some(sent));
            }
            match replayed.ahead.step(room_next, replayed.last, m, now) {
                Step::Send => {}
                Step::Hold => continue,
                Step::Stop => {
                    sink.flush().await?;
                    return Ok(Some(sent));
                }
            }
            replayed.saw(Some(seq));
            sent += 1;
            send(sink, &ServerFrame::Message(encode::message(m))).await?;
        }
        sink.flush().await?;
        if !full {
            return Ok(Some(sent));
        }
    }
}

/// A frame's text for this socket, or `None` when it must not be written (a live copy of a
/// replayed message, or a frame v1 does not show).
pub(super) fn live_text(frame: &Frame, replayed: &Replayed) -> Option<Utf8Bytes> {
    if frame.seq.is_some_and(|seq| replayed.has(seq)) {
        return None;
    }
    encode::from_room(frame)
}

#[cfg(test)]
mod replayed_tests {
    use super::*;

    #[test]
    fn a_resumed_client_has_every_number_up_to_its_resume_point() {
        let mut replayed = Replayed {
            since: Some(Seq::new(5)),
            ..Replayed::default()
        };
        replayed.saw(Some(Seq::new(7)));
        for (seq, has) in [(3, true), (5, true), (6, false), (7, true), (8, false)] {
            assert_eq!(replayed.has(Seq::new(seq)), has, "{seq}");
        }
        let fresh = Replayed::default();
        assert!(
            !fresh.has(Seq::new(1)),
            "a fresh connection has nothing yet"
        );
    }
}
