//! Work that must not share the runtime serving the SMPP binds.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// Runs `task` on a new OS thread named `name`, on a current-thread tokio runtime of its own
/// (timers and I/O enabled). Channels and cancellation tokens work across runtimes, so the
/// task talks to the rest of the daemon as any other task does; what it blocks on (SQLite
/// statements in the calling thread) blocks only that thread. The token returned is
/// cancelled when the task has ended (or panicked).
pub fn on_own_thread(
    name: &str,
    task: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<CancellationToken> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let done = CancellationToken::new();
    let guard = done.clone().drop_guard();
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let _guard = guard;
        runtime.block_on(task);
    })?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_should_run_on_its_own_named_thread_with_timers() {
        let (tx, rx) = std::sync::mpsc::channel();
        let done = on_own_thread("chogate-test", async move {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        })
        .unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("chogate-test"));
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(done.cancelled());
    }
}
