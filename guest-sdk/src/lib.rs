//! Write Herald notification workers in Rust.
//!
//! A worker is a WebAssembly component. Herald takes messages from a queue,
//! hands them to the worker in batches and stores the [`Outcome`] that the
//! worker returns for each message. A worker implements [`Worker`], exports it
//! with [`export_worker!`] and reaches the outside world only through the
//! host's imports, wrapped here as [`gateway`], [`template`], [`queue`],
//! [`audit`], [`log`] and [`config`].
//!
//! # Example
//!
//! A worker that sends a welcome email for each sign-up:
//!
//! ```no_run
//! use herald_sdk::{gateway, template, Email, Error, Message, Worker};
//! use serde::{Deserialize, Serialize};
//!
//! /// Payload that the producer enqueues.
//! #[derive(Deserialize)]
//! struct Signup {
//!     email: String,
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Context<'a> {
//!     name: &'a str,
//! }
//!
//! struct WelcomeWorker;
//!
//! impl Worker for WelcomeWorker {
//!     fn handle(message: &Message) -> Result<(), Error> {
//!         // A payload that does not parse fails the message for good.
//!         let signup: Signup = message.payload()?;
//!         if signup.email.is_empty() {
//!             return Err(Error::fail("invalid payload: `email` is empty"));
//!         }
//!
//!         let context = Context { name: &signup.name };
//!         let html = template::render_html("<p>Welcome, {{ name }}!</p>", &context)?;
//!         let email = Email::new()
//!             .to(&signup.email)
//!             .subject(format!("Welcome, {}", signup.name))
//!             .text(format!("Welcome, {}!", signup.name))
//!             .html(html);
//!
//!         // Transient and rate-limited send errors retry the message.
//!         // Permanent ones fail it.
//!         gateway::send_email("email", message, &email)?;
//!         Ok(())
//!     }
//! }
//!
//! herald_sdk::export_worker!(WelcomeWorker);
//! # fn main() {}
//! ```
//!
//! # Stored templates and other channels
//!
//! A template that the operator stores with `PUT /v1/templates/{name}` can
//! change without a new upload of the worker. [`template::render_stored`]
//! renders its subject, text and HTML parts, and [`Email::from_rendered`]
//! turns them into an email that names the template and version in the
//! delivery log. Besides email, a worker sends text messages ([`Sms`],
//! [`gateway::send_sms`]), push notifications ([`Push`],
//! [`gateway::send_push`]) and signed webhook events ([`WebhookEvent`],
//! [`gateway::send_webhook`]):
//!
//! ```no_run
//! use herald_sdk::{gateway, template, Email, Error, Message, Push, Sms, WebhookEvent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, Serialize)]
//! struct Shipment {
//!     email: String,
//!     phone: String,
//!     device_token: String,
//!     order_id: String,
//! }
//!
//! fn notify(message: &Message) -> Result<(), Error> {
//!     let shipment: Shipment = message.payload()?;
//!
//!     // An undefined variable or a missing template fails the message here,
//!     // before any gateway is called.
//!     let rendered = template::render_stored("order-shipped", &shipment)?;
//!     let text = rendered.text.clone().unwrap_or_default();
//!     let email = Email::from_rendered(rendered.clone()).to(&shipment.email);
//!     gateway::send_email("email", message, &email)?;
//!
//!     let sms = Sms::new()
//!         .to(&shipment.phone)
//!         .body(&text)
//!         .template(rendered.template.clone());
//!     gateway::send_sms("sms", message, &sms)?;
//!
//!     let push = Push::new()
//!         .token(&shipment.device_token)
//!         .title("Order shipped")
//!         .body(&text)
//!         .data("order_id", &shipment.order_id);
//!     gateway::send_push("push", message, &push)?;
//!
//!     let event = WebhookEvent::new("order.shipped", &shipment)?;
//!     gateway::send_webhook("webhook", message, &event)?;
//!     Ok(())
//! }
//! ```
//!
//! Each send has its own idempotency key, derived by the host from the
//! message id, the channel and the recipient unless the worker sets one. When
//! the push gateway above fails transiently, the retry therefore gets the
//! earlier receipts for the email and the text message instead of sending
//! them again.
//!
//! # Building
//!
//! Give the worker crate `crate-type = ["cdylib"]` and build it with
//! `cargo build --release --target wasm32-wasip2`. The `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component that Herald loads.
//!
//! # Testing on a native target
//!
//! The SDK compiles on native targets, so `cargo test` can check payload
//! parsing, the building of emails and other notifications, and [`Error`]
//! handling. The host's imports exist
//! only inside a component: on a native target every function that calls the
//! host (the [`gateway`] sends, [`template::render`],
//! [`template::render_stored`], [`queue::enqueue`], [`audit::record_event`],
//! the [`log`] functions and [`config::get`]) panics with `unreachable`.

#![deny(missing_docs)]

pub mod audit;
pub mod config;
pub mod email;
pub mod error;
pub mod gateway;
pub mod log;
pub mod message;
pub mod outcome;
pub mod push;
pub mod queue;
pub mod sms;
pub mod template;
pub mod webhook;
pub mod worker;

pub use email::Email;
pub use error::Error;
pub use message::{Message, PayloadError};
pub use outcome::Outcome;
pub use push::Push;
pub use sms::Sms;
pub use webhook::WebhookEvent;
pub use worker::Worker;

/// Bindings that `wit-bindgen` generates from `wit/worker.wit`. Workers use
/// the SDK's own types instead.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "herald:worker/notification-worker",
        pub_export_macro: true,
        default_bindings_module: "herald_sdk::bindings",
        export_macro_name: "__export_notification_worker",
    });
}

/// Items that [`export_worker!`] expands to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::worker::Export;
}

/// Exports a type that implements [`Worker`] as the component's
/// `handle-batch` function.
///
/// Invoke it once per component, at module level. It defines the type alias
/// `__HeraldWorkerExport` in that module. See the crate documentation for a
/// whole worker.
#[macro_export]
macro_rules! export_worker {
    ($worker:ty) => {
        // The generated export macro accepts only an identifier, not a
        // generic type, so the alias names the adapter for `$worker`.
        #[doc(hidden)]
        type __HeraldWorkerExport = $crate::__private::Export<$worker>;

        $crate::bindings::__export_notification_worker!(
            __HeraldWorkerExport with_types_in $crate::bindings
        );
    };
}
