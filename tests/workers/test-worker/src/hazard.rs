//! Actions that never return, so that the tests can check how the host
//! contains a trap, an endless loop, memory exhaustion and stack overflow.

use std::hint::black_box;

/// Size of each allocation of [`exhaust_memory`]: 1 MiB.
const CHUNK_BYTES: usize = 1 << 20;

/// Panics. The wasm32-wasip2 target aborts on panic, so the component traps
/// after the panic message goes to stderr.
pub fn trap() -> ! {
    panic!("trap requested by payload");
}

/// Loops forever without calling the host, so only the host's deadline
/// (epoch interruption) stops it. `black_box` keeps the optimiser from
/// removing the loop body.
pub fn spin_forever() -> ! {
    loop {
        black_box(());
    }
}

/// Allocates and fills 1 MiB chunks and keeps them all alive until an
/// allocation fails. The allocation error aborts, so the component traps.
pub fn exhaust_memory() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill writes every byte, so every page of the chunk is
        // touched. `black_box` keeps the optimiser from dropping the chunk.
        let chunk = vec![0xA5_u8; CHUNK_BYTES];
        chunks.push(black_box(chunk));
        black_box(&chunks);
    }
}

/// Recurses until the component's call stack overflows, which traps.
pub fn overflow_stack() -> ! {
    let depth = recurse(black_box(0));
    // `recurse` returns only at depth `u64::MAX`, which no stack can hold.
    panic!("recursion returned at depth {depth} instead of overflowing the stack");
}

/// Calls itself with `depth + 1`. The call is not in tail position, because
/// its result is multiplied and added to, so the optimiser cannot turn the
/// recursion into a loop. A frame keeps only `depth` on the 1 MiB shadow
/// stack in linear memory, so under wasmtime's default `max_wasm_stack` the
/// wasm call stack runs out first and the trap is "call stack exhausted".
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return depth;
    }
    recurse(black_box(depth + 1))
        .wrapping_mul(31)
        .wrapping_add(depth)
}
