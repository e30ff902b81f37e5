//! What a webhook delivery carries besides its signature (`crate::signing`): the
//! `webhook-id` and the body. Pure functions of the stored events, so a redelivery is
//! byte-identical. Must not: do I/O.

use crate::store::PendingEvent;

/// The `webhook-id` of a delivery: the event's id for a single event; for a batch of several,
/// `batch_<first ULID>_<last ULID>`, so the id names exactly the events in the body and a
/// retried batch keeps its id while a batch with different content never reuses one.
pub fn message_id(events: &[PendingEvent]) -> String {
    match events {
        [] => String::new(),
        [one] => one.id.clone(),
        [first, .., last] => format!(
            "batch_{}_{}",
            first.id.trim_start_matches("evt_"),
            last.id.trim_start_matches("evt_")
        ),
    }
}

/// The request body: the event object, or a JSON array in `seq` order when batching. Built
/// from the stored JSON text, so a redelivery sends byte-identical events.
pub fn body(events: &[PendingEvent], batch: bool) -> String {
    if !batch {
        return events.first().map(|e| e.body.clone()).unwrap_or_default();
    }
    let mut out = String::with_capacity(events.iter().map(|e| e.body.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&event.body);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(seq: u64) -> PendingEvent {
        PendingEvent {
            seq,
            id: format!("evt_{seq:026}"),
            occurred_at: 0,
            body: format!("{{\"seq\":{seq}}}"),
        }
    }

    #[test]
    fn a_batch_is_an_array_named_by_its_first_and_last_event() {
        let events = [event(1), event(2), event(3)];
        assert_eq!(body(&events, true), r#"[{"seq":1},{"seq":2},{"seq":3}]"#);
        assert_eq!(body(&events[..1], true), r#"[{"seq":1}]"#);
        assert_eq!(body(&events[..1], false), r#"{"seq":1}"#);
        assert_eq!(message_id(&events[..1]), events[0].id);
        assert_eq!(message_id(&events), format!("batch_{:026}_{:026}", 1, 3));
    }
}
