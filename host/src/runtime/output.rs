//! Capture of a guest's stdout and stderr.
//!
//! Output is kept up to a byte limit and the rest is counted and dropped. The
//! guest never gets a write error, because a full pipe would make Rust's
//! `println!` panic and trap the batch.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Largest write permit handed to the guest at a time.
const PERMIT: usize = 64 * 1024;

/// One captured stream, cheap to clone; clones share the buffer.
#[derive(Clone)]
pub(super) struct CapturedOutput {
    inner: Arc<Mutex<Buffer>>,
}

struct Buffer {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: u64,
}

impl CapturedOutput {
    /// Creates a stream that keeps at most `capacity` bytes.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Buffer {
                bytes: Vec::new(),
                capacity,
                dropped: 0,
            })),
        }
    }

    /// Returns the bytes kept and the number of bytes dropped.
    pub(super) fn take(&self) -> (Vec<u8>, u64) {
        let mut buffer = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let dropped = buffer.dropped;
        buffer.dropped = 0;
        (std::mem::take(&mut buffer.bytes), dropped)
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let room = buffer.capacity.saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += (bytes.len() - kept) as u64;
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_capacity_is_counted_and_dropped() {
        let mut output = CapturedOutput::new(5);

        output.write(Bytes::from_static(b"hello")).unwrap();
        output.write(Bytes::from_static(b" world")).unwrap();

        assert_eq!(output.check_write().unwrap(), PERMIT);
        assert_eq!(output.take(), (b"hello".to_vec(), 6));
    }
}
