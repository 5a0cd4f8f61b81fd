//! `LISTEN`/`NOTIFY`: the notification channels, turned into [`SharedEvent`]s.
use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{debug, warn};
use uuid::Uuid;

use super::contact::Contact;
use crate::store::SharedEvent;

/// Notifications read but not yet turned into events. The turning never
/// waits, so this only smooths bursts; when full, the connection is read
/// more slowly and PostgreSQL keeps the rest.
const NOTES_BUFFER: usize = 1024;

/// Follows the notification channels on a connection of its own, turning
/// each into a [`SharedEvent`]; reconnects with backoff, and sends
/// [`SharedEvent::Resync`] after each (re)connection, since notifications
/// may have been missed meanwhile.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    events: broadcast::Sender<SharedEvent>,
    limit: Duration,
    contact: Arc<Contact>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Within `limit`: a database that accepts connections and never
        // answers is retried, not waited on for ever.
        let connected = match tokio::time::timeout(limit, config.connect(tls.clone())).await {
            Ok(c) => c.map_err(|e| super::errors::chain(&e)),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        };
        match connected {
            Ok((client, mut connection)) => {
                let (note_tx, mut notes) = mpsc::channel(NOTES_BUFFER);
                let lost = contact.clone();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                if note_tx.send(n).await.is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                let e = super::errors::chain(&e);
                                lost.unreached();
                                warn!(error = %e, "the PostgreSQL notification connection failed");
                                break;
                            }
                        }
                    }
                });
                let listening = tokio::time::timeout(
                    limit,
                    client.batch_execute(
                        "LISTEN errand_tasks; LISTEN errand_completions; LISTEN errand_cancels; \
                         LISTEN errand_tools; LISTEN errand_left_queue;",
                    ),
                )
                .await;
                if let Err(e) = listening
                    .map_err(|_| format!("no answer within {} ms", limit.as_millis()))
                    .and_then(|r| r.map_err(|e| super::errors::chain(&e)))
                {
                    contact.unreached();
                    warn!(error = %e, "LISTEN failed");
                    driver.abort();
                } else {
                    contact.reached();
                    backoff = Duration::from_millis(100);
                    let _ = events.send(SharedEvent::Resync);
                    while let Some(n) = notes.recv().await {
                        if let Some(event) = parse_event(n.channel(), n.payload()) {
                            let _ = events.send(event);
                        }
                    }
                    drop(client);
                }
            }
            Err(e) => {
                contact.unreached();
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot open the PostgreSQL notification connection; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The `errand_cancels` payload of task `id` cancelled with `reason`.
pub(super) fn cancel_payload(id: Uuid, reason: &str) -> String {
    format!("{id}\t{reason}")
}

/// Task IDs per `errand_left_queue` payload: 37 bytes each with its comma,
/// well within PostgreSQL's 8000-byte payload.
const IDS_PER_PAYLOAD: usize = 200;

/// The `errand_left_queue` payloads of tasks `ids`: their IDs,
/// comma-separated, at most [`IDS_PER_PAYLOAD`] in each.
pub(super) fn left_queue_payloads(ids: &[Uuid]) -> Vec<String> {
    ids.chunks(IDS_PER_PAYLOAD)
        .map(|chunk| {
            chunk
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn parse_event(channel: &str, payload: &str) -> Option<SharedEvent> {
    match channel {
        "errand_tasks" => Some(SharedEvent::TasksQueued {
            tool: payload.to_string(),
        }),
        "errand_completions" => {
            let (seq, session) = payload.split_once('\t')?;
            Some(SharedEvent::Completed {
                session: session.to_string(),
                seq: seq.parse().ok()?,
            })
        }
        // "id<TAB>reason"; a bare id (an older server) has no reason.
        "errand_cancels" => {
            let (id, reason) = payload.split_once('\t').unwrap_or((payload, ""));
            Some(SharedEvent::Cancelled {
                task_id: Uuid::parse_str(id).ok()?,
                reason: reason.to_string(),
            })
        }
        "errand_tools" => Some(SharedEvent::ToolsChanged),
        // IDs that do not parse are left out (none from errand).
        "errand_left_queue" => Some(SharedEvent::LeftQueue {
            task_ids: payload
                .split(',')
                .filter_map(|id| Uuid::parse_str(id).ok())
                .collect(),
        }),
        other => {
            debug!(
                channel = other,
                "notification on an unknown channel ignored"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_carries_its_reason_and_a_bare_id_none() {
        let id = Uuid::new_v4();
        let reason = crate::text::cancel_reason(&crate::text::cancelled("tab\there").0).to_string();
        assert_eq!(reason, "tab\there");
        assert_eq!(
            parse_event("errand_cancels", &cancel_payload(id, &reason)),
            Some(SharedEvent::Cancelled {
                task_id: id,
                reason: "tab\there".into()
            })
        );
        assert_eq!(
            parse_event("errand_cancels", &id.to_string()),
            Some(SharedEvent::Cancelled {
                task_id: id,
                reason: String::new()
            })
        );
        assert_eq!(
            crate::text::cancel_reason(&crate::text::cancelled("").0),
            ""
        );
        assert_eq!(parse_event("errand_cancels", "not an id\tx"), None);
    }

    #[test]
    fn tasks_that_left_the_queue_are_told_in_payloads_within_the_limit() {
        let ids: Vec<Uuid> = (0..450).map(|_| Uuid::new_v4()).collect();
        let payloads = left_queue_payloads(&ids);
        assert_eq!(payloads.len(), 3);
        assert!(payloads.iter().all(|p| p.len() < 8000));
        let told: Vec<Uuid> = payloads
            .iter()
            .flat_map(|p| match parse_event("errand_left_queue", p) {
                Some(SharedEvent::LeftQueue { task_ids }) => task_ids,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(told, ids);
    }
}
