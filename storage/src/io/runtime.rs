//! Tasks and timers of the shard's executor.

use std::future::Future;
use std::time::Duration;

/// A task running on the current executor; dropping the handle leaves it running.
pub struct BackgroundTask<T> {
    task: Option<glommio::Task<T>>,
}

impl<T> BackgroundTask<T> {
    /// Waits for the task's result.
    pub async fn join(mut self) -> Option<T> {
        match self.task.take() {
            Some(t) => Some(t.await),
            None => None,
        }
    }
}

impl<T> Drop for BackgroundTask<T> {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.detach();
        }
    }
}

/// Spawns `fut` on the current glommio executor. Panics if called outside one (a programming
/// error: the store is only ever used from its shard's executor).
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> BackgroundTask<T> {
    BackgroundTask {
        task: Some(glommio::spawn_local(fut)),
    }
}

/// How soon a latency-sensitive task queue must get the CPU after its I/O completes.
const URGENT_LATENCY: std::time::Duration = std::time::Duration::from_millis(1);

/// Like [`spawn`], in a task queue of its own that glommio treats as latency-sensitive: its
/// I/O goes through the latency ring, and a completion there preempts the other queues within
/// [`URGENT_LATENCY`]. Without it, a shard kept busy by connection tasks only looks at I/O
/// completions when its run queue empties or every 100 ms (glommio's preempt timer), and the
/// CommitLog flusher fell behind the appends. Panics only if glommio refuses the queue it just
/// created (a programming error, like calling it outside an executor).
pub fn spawn_urgent<T: 'static>(
    name: &str,
    fut: impl Future<Output = T> + 'static,
) -> BackgroundTask<T> {
    let tq = glommio::executor().create_task_queue(
        glommio::Shares::default(),
        glommio::Latency::Matters(URGENT_LATENCY),
        name,
    );
    match glommio::spawn_local_into(fut, tq) {
        Ok(task) => BackgroundTask { task: Some(task) },
        Err(e) => panic!("spawning into a task queue created just now failed: {e}"),
    }
}

/// Runs blocking work (a small file written with fsync) on the executor's blocking thread and
/// waits for it without stalling the shard.
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// Sleeps on the executor's timer.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// Lets other tasks of the executor run if this one has used its time slice.
pub async fn yield_now() {
    glommio::yield_if_needed().await
}

/// Runs `fut` to completion on a fresh single-threaded glommio executor on the calling thread
/// (tests, tools). Fails if the executor cannot start (io_uring blocked, locked memory).
pub fn block_on<T>(fut: impl Future<Output = T>) -> std::io::Result<T> {
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .map_err(super::to_io_error)?;
    Ok(ex.run(fut))
}
