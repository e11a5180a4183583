//! `herald:worker/log`: guest log lines, written to the host's log with the
//! worker, version and message ids.

use crate::runtime::bindings::log as wit;
use crate::runtime::state::{MAX_LOG_LINES, WorkerState};

/// Maximum length of a log line in bytes. Longer lines are cut.
const MAX_LINE_BYTES: usize = 4 * 1024;

impl wit::Host for WorkerState {
    fn log(&mut self, level: wit::Level, message: String, message_id: Option<String>) {
        let scope = &mut self.scope;
        if scope.log_lines >= MAX_LOG_LINES {
            scope.dropped_log_lines += 1;
            return;
        }
        scope.log_lines += 1;

        let mut line = message;
        if line.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push('…');
        }
        let worker = &*scope.worker;
        let version = scope.version;
        let message_id = message_id.as_deref();
        match level {
            wit::Level::Trace => {
                tracing::trace!(target: "herald::worker", worker, version, message_id, "{line}")
            }
            wit::Level::Debug => {
                tracing::debug!(target: "herald::worker", worker, version, message_id, "{line}")
            }
            wit::Level::Info => {
                tracing::info!(target: "herald::worker", worker, version, message_id, "{line}")
            }
            wit::Level::Warn => {
                tracing::warn!(target: "herald::worker", worker, version, message_id, "{line}")
            }
            wit::Level::Error => {
                tracing::error!(target: "herald::worker", worker, version, message_id, "{line}")
            }
        }
    }
}
