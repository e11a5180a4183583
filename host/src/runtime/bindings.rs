//! Rust bindings for the `herald:worker/notification-worker` world, generated
//! from `wit/` at build time.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "notification-worker",
    // Gateways, the queue and the audit log do I/O, so their host functions
    // are async and a slow SMTP server does not block a runtime thread.
    imports: {
        "herald:worker/gateway": async,
        "herald:worker/queue": async,
        "herald:worker/audit": async,
        // Rendering a stored template reads it from the database first. A
        // failed read is a host fault, so it traps instead of returning a
        // template error that the worker would take as its own mistake.
        // Rendering a template string does no I/O and stays synchronous.
        "herald:worker/template.render-stored": async | trappable,
    },
    // Batches run on tokio, interleaved at every host call and epoch tick.
    exports: { default: async },
});

pub use self::herald::worker::{audit, config, gateway, log, queue, template, types};
