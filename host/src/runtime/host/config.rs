//! `herald:worker/config`: the worker's own non-secret settings.

use crate::runtime::bindings::config as wit;
use crate::runtime::state::WorkerState;

impl wit::Host for WorkerState {
    fn get(&mut self, key: String) -> Option<String> {
        self.scope.settings.get(&key).cloned()
    }
}
