//! `herald:worker/template`: rendering template strings.

use crate::runtime::bindings::template as wit;
use crate::runtime::state::WorkerState;
use crate::template::{self, Escape, RenderError};

impl wit::Host for WorkerState {
    fn render(
        &mut self,
        template: String,
        context: String,
        escape: wit::Escape,
    ) -> Result<String, wit::TemplateError> {
        let escape = match escape {
            wit::Escape::None => Escape::None,
            wit::Escape::Html => Escape::Html,
        };
        template::render(&template, &context, escape).map_err(|error| {
            tracing::debug!(worker = %self.scope.worker, %error, "template render failed");
            wit::TemplateError::from(error)
        })
    }

    fn render_stored(
        &mut self,
        name: String,
        _context: String,
    ) -> Result<wit::Rendered, wit::TemplateError> {
        Err(wit::TemplateError::NotFound(name))
    }
}

impl From<RenderError> for wit::TemplateError {
    fn from(error: RenderError) -> Self {
        match error {
            RenderError::InvalidTemplate(message) => Self::InvalidTemplate(message),
            RenderError::InvalidContext(message) => Self::InvalidContext(message),
            RenderError::RenderFailed(message) => Self::RenderFailed(message),
        }
    }
}
