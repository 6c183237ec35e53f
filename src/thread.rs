//! Work that must not share the runtime serving the SMPP binds.

use std::future::Future;

/// Runs `task` on a new OS thread named `name`, on a current-thread tokio runtime of its own
/// (timers and I/O enabled). Channels and cancellation tokens work across runtimes, so the
/// task talks to the rest of the daemon as any other task does; what it blocks on (SQLite
/// statements in the calling thread) blocks only that thread.
pub fn on_own_thread(name: &str, task: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name(name.to_owned()).spawn(move || runtime.block_on(task))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_should_run_on_its_own_named_thread_with_timers() {
        let (tx, rx) = std::sync::mpsc::channel();
        on_own_thread("chogate-test", async move {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        })
        .unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("chogate-test"));
    }
}
