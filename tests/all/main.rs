//! Integration tests: the real `herald` binary over HTTP, real components
//! built from this repository, and a real SMTP server on 127.0.0.1.
//!
//! Guest workers are built once per test process (see `support::workers`).
//! A failing test prints the log of every herald process it started.

mod support;

mod auth;
mod cli;
mod crash;
mod email;
mod faults;
mod gateway_limits;
mod providers;
mod reservation;
mod retries;
mod samples;
mod smtp_replies;
mod smtp_tls;
mod templates;
mod upload;
