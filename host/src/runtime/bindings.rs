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
    },
    // Batches run on tokio, interleaved at every host call and epoch tick.
    exports: { default: async },
});

pub use self::herald::worker::{audit, config, gateway, log, queue, template, types};
