//! A component that does not export `handle-batch`, so Herald must reject it
//! at upload because it does not match the `notification-worker` world.

/// Returns the sum of `a` and `b`, wrapping on overflow. It gives the core
/// module an export of its own, which `wasm-component-ld` does not lift into
/// the component, so the component still exports nothing.
#[unsafe(no_mangle)]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
