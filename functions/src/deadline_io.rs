//! A connection whose responses must be read in time: from the first write that has to wait (the client is
//! not reading, its socket buffer is full) until the client next sends something (its next request), writes
//! may wait for the write timeout in all; past it the connection fails. Progress does not extend it: a
//! client that reads one segment now and then would otherwise hold a connection (and its slot of
//! `CAIRN_MAX_CONNECTIONS`) for hours. Reads pass through: hyper bounds the headers, the MGET handler the
//! body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct DeadlineIo<T> {
    inner: T,
    timeout: Duration,
    /// Armed by the first write that waited since the client last sent bytes.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> DeadlineIo<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        DeadlineIo { inner, timeout, stalled: None }
    }

    /// `op`'s poll, failing once the timeout has passed since the first write that waited.
    fn bounded<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>>
    where
        T: Unpin,
    {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep =
                    self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
                ready!(sleep.as_mut().poll(cx));
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the response was not read within {timeout:?}"),
                )))
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.stalled = None; // the client sent something: a new request, whose answer gets its own time
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.bounded(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.bounded(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.bounded(cx, |io, cx| io.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.bounded(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: the write fails after the timeout instead of waiting for ever.
    #[tokio::test]
    async fn a_write_that_makes_no_progress_fails() {
        let (a, _b) = tokio::io::duplex(64);
        let mut io = super::DeadlineIo::new(a, std::time::Duration::from_millis(100));
        let write = tokio::time::timeout(std::time::Duration::from_secs(60), io.write_all(&[0u8; 1024]));
        let err = write.await.expect("the write waited for ever").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }

    /// A peer that reads a little now and then: progress does not extend the deadline, so the response
    /// fails instead of holding the connection for as long as the peer likes.
    #[tokio::test(start_paused = true)]
    async fn a_response_read_a_trickle_at_a_time_fails() {
        use tokio::io::AsyncReadExt;
        let (a, mut b) = tokio::io::duplex(64);
        tokio::spawn(async move {
            let mut buf = [0u8; 16];
            while b.read(&mut buf).await.is_ok_and(|n| n > 0) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        let mut io = super::DeadlineIo::new(a, std::time::Duration::from_millis(200));
        // 1 MiB at 16 bytes per 5 ms would take 5 minutes.
        let response = vec![0u8; 1 << 20];
        let write = tokio::time::timeout(std::time::Duration::from_secs(60), io.write_all(&response));
        let err = write.await.expect("a trickling reader held the write for a minute").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }

    /// Bytes from the client (its next request) give the next response a deadline of its own.
    /// Time is paused (it moves only when every task waits), so the peer's prompt reads are prompt however
    /// loaded the machine.
    #[tokio::test(start_paused = true)]
    async fn the_next_request_starts_a_new_deadline() {
        use tokio::io::AsyncReadExt;
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = super::DeadlineIo::new(a, std::time::Duration::from_millis(300));
        // A write that waits (arms the deadline), then is read in full.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 128];
            b.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(400)).await; // past the first deadline
            b.write_all(b"next").await.unwrap();
            let mut buf = vec![0u8; 128];
            b.read_exact(&mut buf).await.unwrap();
            b
        });
        io.write_all(&[1u8; 128]).await.unwrap();
        let mut next = [0u8; 4];
        io.read_exact(&mut next).await.unwrap();
        io.write_all(&[2u8; 128]).await.expect("the second response was held to the first one's deadline");
        reader.await.unwrap();
    }
}
