//! Log lines that land in the host's log. The host tags each line with the
//! worker and its version, and lines written through [`for_message`] with the
//! message id as well.
//!
//! ```no_run
//! use herald_sdk::{log, Message};
//!
//! fn report(message: &Message) {
//!     log::info("cache warmed");
//!     log::for_message(message).warn("recipient opted out, skipping");
//! }
//! ```

use crate::bindings::herald::worker::log as wit;
use crate::message::Message;

/// Writes `text` at trace level.
pub fn trace(text: &str) {
    wit::log(wit::Level::Trace, text, None);
}

/// Writes `text` at debug level.
pub fn debug(text: &str) {
    wit::log(wit::Level::Debug, text, None);
}

/// Writes `text` at info level.
pub fn info(text: &str) {
    wit::log(wit::Level::Info, text, None);
}

/// Writes `text` at warn level.
pub fn warn(text: &str) {
    wit::log(wit::Level::Warn, text, None);
}

/// Writes `text` at error level.
pub fn error(text: &str) {
    wit::log(wit::Level::Error, text, None);
}

/// Returns a logger that tags every line with the id of `message`.
pub fn for_message(message: &Message) -> MessageLog<'_> {
    MessageLog {
        message_id: message.id(),
    }
}

/// Logger that tags every line with one message's id. Created by
/// [`for_message`].
#[derive(Debug, Clone, Copy)]
pub struct MessageLog<'a> {
    message_id: &'a str,
}

impl MessageLog<'_> {
    /// Writes `text` at trace level, tagged with the message id.
    pub fn trace(&self, text: &str) {
        wit::log(wit::Level::Trace, text, Some(self.message_id));
    }

    /// Writes `text` at debug level, tagged with the message id.
    pub fn debug(&self, text: &str) {
        wit::log(wit::Level::Debug, text, Some(self.message_id));
    }

    /// Writes `text` at info level, tagged with the message id.
    pub fn info(&self, text: &str) {
        wit::log(wit::Level::Info, text, Some(self.message_id));
    }

    /// Writes `text` at warn level, tagged with the message id.
    pub fn warn(&self, text: &str) {
        wit::log(wit::Level::Warn, text, Some(self.message_id));
    }

    /// Writes `text` at error level, tagged with the message id.
    pub fn error(&self, text: &str) {
        wit::log(wit::Level::Error, text, Some(self.message_id));
    }
}
