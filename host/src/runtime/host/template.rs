//! `herald:worker/template`: rendering template strings and stored
//! templates.
//!
//! A failed render is an error the worker handles. A database failure while
//! reading a stored template is a host fault instead, so it traps the batch,
//! which is then retried, rather than telling the worker that its template
//! is wrong.

use tracing::Instrument;

use crate::runtime::bindings::template as wit;
use crate::runtime::bindings::types::TemplateRef;
use crate::runtime::state::WorkerState;
use crate::template::{self, Escape, RenderError, RenderStoredError, RenderedTemplate};

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

    async fn render_stored(
        &mut self,
        name: String,
        context: String,
    ) -> wasmtime::Result<Result<wit::Rendered, wit::TemplateError>> {
        let scope = &self.scope;
        let span = tracing::info_span!(
            "herald.template.render_stored",
            worker = %scope.worker,
            version = scope.version,
            template = %name,
        );
        let render = async {
            match scope.services.templates.render(name, &context).await {
                Ok(rendered) => Ok(Ok(wit::Rendered::from(rendered))),
                Err(RenderStoredError::Store(error)) => {
                    tracing::error!(%error, "failed to read a stored template");
                    Err(wasmtime::Error::msg(format!(
                        "failed to read a stored template: {error}"
                    )))
                }
                Err(error) => {
                    tracing::info!(%error, "stored template render failed");
                    Ok(Err(wit::TemplateError::from(error)))
                }
            }
        };
        render.instrument(span).await
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

impl From<RenderStoredError> for wit::TemplateError {
    fn from(error: RenderStoredError) -> Self {
        let message = error.to_string();
        match error {
            RenderStoredError::NotFound(_) => Self::NotFound(message),
            RenderStoredError::InvalidContext(_) => Self::InvalidContext(message),
            RenderStoredError::InvalidTemplate { .. } => Self::InvalidTemplate(message),
            RenderStoredError::RenderFailed { .. } | RenderStoredError::Store(_) => {
                Self::RenderFailed(message)
            }
        }
    }
}

impl From<RenderedTemplate> for wit::Rendered {
    fn from(rendered: RenderedTemplate) -> Self {
        Self {
            template: TemplateRef {
                name: rendered.name,
                version: rendered.version,
            },
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        }
    }
}
