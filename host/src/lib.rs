//! Herald: a host runtime for notification workers compiled to WebAssembly
//! components.
//!
//! A worker is uploaded over HTTP, consumes the queue of the same name, and
//! reaches the outside world only through the capabilities the host lends it
//! (gateways, templates, the queue, the audit log).
//!
//! The modules follow the data path. [`api`] takes uploads and messages, and
//! [`queue`] keeps them durable in the [`store`]. [`dispatch`] reserves
//! batches and runs them on the [`runtime`]. [`gateway`] delivers what the
//! workers send, and [`audit`] records every attempt.

pub mod api;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod gateway;
pub mod queue;
pub mod runtime;
pub mod server;
pub mod store;
pub mod template;
pub mod webhook;
pub mod workers;
