//! Host implementations of the WIT interfaces, one module per interface.
//! Each checks what the guest passes in, calls into the host service behind
//! it, and converts the result back into WIT types at the bottom of its file.

mod audit;
mod config;
mod gateway;
mod log;
mod queue;
mod template;

use super::bindings::types;
use super::state::WorkerState;

impl types::Host for WorkerState {}
