//! Templates with MiniJinja syntax: rendering template strings for workers,
//! and the named, versioned templates that the API stores and workers render
//! by name.
//!
//! Undefined variables are errors. Printing one, passing it to a filter
//! (`{{ first_name | upper }}`) or reading its attributes fails the render
//! with a message that names the variable, so a missing name never produces
//! "Hello ,". Three forms still accept a missing variable:
//! `{{ x | default("there") }}`, `{% if x is defined %}`, and a plain truth
//! test `{% if x %}`, which treats it as false so that an optional field can
//! be left out of the context.
//!
//! This module does not send anything and does not decide what happens to
//! a message whose render failed. The worker does, through the `template`
//! import in [`crate::runtime`].

mod filters;
mod render;
mod store;
mod undefined;

pub use render::{Escape, RenderError, SyntaxError, check_syntax, render};
pub use store::{
    InvalidName, InvalidPart, MAX_NAME_LENGTH, Part, Put, PutError, RenderStoredError,
    RenderedTemplate, StoredTemplate, TemplateParts, TemplateStore, TemplateSummary, validate_name,
    validate_parts,
};
