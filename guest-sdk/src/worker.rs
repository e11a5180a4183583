//! The [`Worker`] trait that a worker implements, and the adapter that
//! [`export_worker!`](crate::export_worker) exports as the component's
//! `handle-batch` function.

use std::marker::PhantomData;

use crate::bindings;
use crate::bindings::herald::worker::types as wit;
use crate::error::Error;
use crate::log;
use crate::message::Message;
use crate::outcome::Outcome;

/// A notification worker. Implement it on a unit struct and export that with
/// [`export_worker!`](crate::export_worker).
///
/// The host gives the component no filesystem, sockets or environment
/// variables, so everything outside goes through the SDK's modules. A panic
/// traps the component, so the host receives no outcome for any message of
/// the batch.
pub trait Worker {
    /// Handles one message. `Ok(())` marks it done, and the [`Error`] decides
    /// whether it is retried, failed or deferred.
    ///
    /// # Errors
    ///
    /// Returns the [`Error`] whose outcome the host applies to `message`.
    fn handle(message: &Message) -> Result<(), Error>;

    /// Handles a whole batch and returns one outcome per message, in the same
    /// order. The default calls [`Worker::handle`] for each message.
    ///
    /// Override it to share work across a batch, such as one lookup for all
    /// recipients. Returning a different number of outcomes than messages
    /// fails the whole batch.
    fn handle_batch(batch: &[Message]) -> Vec<Outcome> {
        batch
            .iter()
            .map(|message| Outcome::from(Self::handle(message)))
            .collect()
    }
}

/// Adapter that implements the generated `Guest` trait for any [`Worker`].
#[doc(hidden)]
pub struct Export<W>(PhantomData<W>);

impl<W: Worker> bindings::Guest for Export<W> {
    fn handle_batch(batch: Vec<wit::Message>) -> Vec<wit::Outcome> {
        let batch_len = batch.len();
        let outcomes = handle_wit_batch::<W>(batch);

        if outcomes.len() != batch_len {
            log::error(&format!(
                "Worker::handle_batch returned {} outcomes for a batch of {batch_len} messages, \
                 so the host fails the whole batch; return exactly one outcome per message",
                outcomes.len()
            ));
        }
        outcomes
    }
}

/// Converts the host's batch to SDK messages, runs `W` and converts the
/// outcomes back.
fn handle_wit_batch<W: Worker>(batch: Vec<wit::Message>) -> Vec<wit::Outcome> {
    let messages: Vec<Message> = batch.into_iter().map(Message::from).collect();
    W::handle_batch(&messages)
        .into_iter()
        .map(wit::Outcome::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Job {
        action: String,
    }

    /// Worker whose outcome is chosen by the payload, so that the tests need
    /// no host import.
    struct ScriptedWorker;

    impl Worker for ScriptedWorker {
        fn handle(message: &Message) -> Result<(), Error> {
            let job: Job = message.payload()?;
            match job.action.as_str() {
                "done" => Ok(()),
                "retry" => Err(Error::retry_after("mailbox busy", 30)),
                "defer" => Err(Error::defer(600)),
                other => Err(Error::fail(format!("unknown action `{other}`"))),
            }
        }
    }

    fn wit_message(id: &str, payload: &str) -> wit::Message {
        wit::Message {
            id: id.to_string(),
            queue: "jobs".to_string(),
            payload: payload.to_string(),
            attempt: 1,
            enqueued_at: "2025-01-01T00:00:00Z".to_string(),
        }
    }

    #[test]
    fn default_handle_batch_maps_each_message() {
        let batch = [
            Message::new(
                "1",
                "jobs",
                r#"{"action": "done"}"#,
                1,
                "2025-01-01T00:00:00Z",
            ),
            Message::new(
                "2",
                "jobs",
                r#"{"action": "retry"}"#,
                1,
                "2025-01-01T00:00:00Z",
            ),
            Message::new(
                "3",
                "jobs",
                r#"{"action": "defer"}"#,
                1,
                "2025-01-01T00:00:00Z",
            ),
            Message::new(
                "4",
                "jobs",
                r#"{"action": "shout"}"#,
                1,
                "2025-01-01T00:00:00Z",
            ),
        ];

        let outcomes = ScriptedWorker::handle_batch(&batch);

        assert_eq!(outcomes.len(), 4);
        assert_eq!(outcomes[0], Outcome::Done);
        assert_eq!(
            outcomes[1],
            Outcome::Retry {
                error: "mailbox busy".to_string(),
                delay_seconds: Some(30),
            }
        );
        assert_eq!(outcomes[2], Outcome::Defer(600));
        assert_eq!(
            outcomes[3],
            Outcome::Fail("unknown action `shout`".to_string())
        );
    }

    #[test]
    fn wit_batch_keeps_order_and_length() {
        let batch = vec![
            wit_message("1", r#"{"action": "shout"}"#),
            wit_message("2", "{}"),
            wit_message("3", r#"{"action": "done"}"#),
        ];

        let outcomes = handle_wit_batch::<ScriptedWorker>(batch);

        assert_eq!(outcomes.len(), 3);
        assert!(
            matches!(&outcomes[0], wit::Outcome::Fail(reason) if reason == "unknown action `shout`"),
            "{:?}",
            outcomes[0]
        );
        assert!(
            matches!(&outcomes[1], wit::Outcome::Fail(reason) if reason.contains("missing field `action`")),
            "{:?}",
            outcomes[1]
        );
        assert!(
            matches!(outcomes[2], wit::Outcome::Done),
            "{:?}",
            outcomes[2]
        );
    }

    #[test]
    fn wit_batch_empty_returns_empty() {
        let outcomes = handle_wit_batch::<ScriptedWorker>(Vec::new());

        assert!(outcomes.is_empty());
    }
}
