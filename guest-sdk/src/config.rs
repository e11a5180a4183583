//! The worker's own settings from the operator's configuration. Secrets never
//! appear here.

use crate::bindings::herald::worker::config as wit;

/// Returns the setting `key`, or `None` when the operator did not set it.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}
