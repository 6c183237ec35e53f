//! The writer of a session: what the session queues leaves in batches, one write each,
//! and a peer that takes nothing for the response timeout ends the session.

use super::*;

/// Writes all of `buf`, failing if the peer takes none of it for `stall`. Most writes fit in
/// the socket's buffer at once and need no timer.
async fn write_or_stall(w: &mut WriteSide, buf: &[u8], stall: Duration) -> std::io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match w.try_write(&buf[off..]) {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    while off < buf.len() {
        let n = within(stall, w.write(&buf[off..])).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        off += n;
    }
    // TLS keeps what it could not send yet in its own buffer: push it out (nothing for TCP).
    if w.buffers() {
        within(stall, w.flush()).await?;
    }
    Ok(())
}

/// `io`, failing as a stalled peer if it does not complete within `stall`.
async fn within<T>(stall: Duration, io: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    tokio::select! {
        biased;
        r = io => r,
        () = tokio::time::sleep(stall) => {
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer takes nothing"))
        }
    }
}

/// Appends what is queued in `rx` to `buf`, until `buf` holds `limit` bytes or more.
fn take_queued(rx: &mut mpsc::Receiver<Bytes>, buf: &mut BytesMut, limit: usize) {
    while buf.len() < limit {
        match rx.try_recv() {
            Ok(more) => buf.extend_from_slice(&more),
            Err(_) => break,
        }
    }
}

/// Writes what the session sends, coalescing PDUs that queue up into one write.
/// Writes what the session queues, in batches, until the session is done. A peer that takes
/// nothing for `stall` (the response timeout) is gone: the session ends, rather than every
/// task that queues a PDU for it waiting for room forever.
pub(super) async fn write_loop(
    mut w: WriteSide,
    mut rx: mpsc::Receiver<Bytes>,
    done: CancellationToken,
    stall: Duration,
) {
    const BATCH: usize = 64 * 1024;
    let mut buf = BytesMut::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(first) => {
                    buf.extend_from_slice(&first);
                    take_queued(&mut rx, &mut buf, BATCH);
                    if buf.len() < BATCH {
                        // Let the tasks that are ready run first: under load they queue more
                        // PDUs, which then leave in this same write (one syscall, one TCP
                        // segment, instead of several); idle, it costs one pass of the
                        // scheduler.
                        tokio::task::yield_now().await;
                        take_queued(&mut rx, &mut buf, BATCH);
                    }
                    if let Err(e) = write_or_stall(&mut w, &buf, stall).await {
                        debug!(error = %e, "write failed");
                        done.cancel();
                        return;
                    }
                    buf.clear();
                }
                None => break,
            },
            () = done.cancelled() => break,
        }
    }
    // Flush what was queued before the end (the last unbind_resp, say), then close.
    take_queued(&mut rx, &mut buf, usize::MAX);
    let flush = async {
        if !buf.is_empty() {
            w.write_all(&buf).await?;
        }
        w.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
}
