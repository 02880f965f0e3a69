//! Reading from a sequence number (`after`, `before`; protocol v1's resume and paging): one
//! Query from the number's sort key, with the messages stored before numbers first.

use jiva_core::{ConnectionType, MessageStore, Sender, Seq};

use crate::support::{chat, store, text};

#[tokio::test]
async fn after_and_before_a_number_read_in_chat_order_with_unnumbered_messages_first() {
    let store = store().await;
    let chat = chat(ConnectionType::Supervisor);
    crate::support::write_unnumbered(&store, &chat, &[300, 100, 200]).await;
    for i in 1..=5 {
        let m = text(&chat, Sender::Agent, 1_700_000_000_000, &format!("new-{i}"));
        assert_eq!(store.append(&m).await.unwrap().seq(), Seq::new(i));
    }
    let seqs =
        |ms: &[jiva_core::Message]| ms.iter().map(|m| m.seq.map(Seq::get)).collect::<Vec<_>>();

    let after = store.after(&chat, Seq::new(2), 10).await.unwrap();
    assert_eq!(seqs(&after), [Some(3), Some(4), Some(5)]);
    let after = store.after(&chat, Seq::new(0), 2).await.unwrap();
    assert_eq!(seqs(&after), [Some(1), Some(2)]);

    let page = store.before(&chat, Seq::new(3), 3).await.unwrap();
    assert_eq!(seqs(&page.messages), [None, Some(1), Some(2)]);
    assert_eq!(page.messages[0].timestamp.as_millis(), 1_600_000_000_300);
    assert!(page.has_older);
    let page = store.before(&chat, Seq::new(3), 10).await.unwrap();
    assert_eq!(seqs(&page.messages), [None, None, None, Some(1), Some(2)]);
    assert!(!page.has_older);
    let times: Vec<i64> = page
        .messages
        .iter()
        .map(|m| m.timestamp.as_millis())
        .collect();
    assert_eq!(
        &times[..3],
        [1_600_000_000_100, 1_600_000_000_200, 1_600_000_000_300]
    );
}
