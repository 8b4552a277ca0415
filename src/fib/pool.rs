//! The bounded pool that computes large Fibonacci numbers off the event loop: a few named
//! threads (`FIB_POOL_SIZE`, shared by every worker of the process) fed by a bounded queue. A
//! full queue is an immediate "busy" answer, not a longer wait, so a flood of fib(1e6) requests
//! can neither grow memory nor starve the clock.
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::compute;

/// Jobs waiting for a thread, across the whole process. fib(1e6) takes tens of milliseconds,
/// so 256 queued jobs are a few seconds of work at most: beyond that a client is better told
/// "busy" than left waiting.
const QUEUE_CAPACITY: usize = 256;

struct Job {
    n: u64,
    reply: oneshot::Sender<String>,
}

/// The queue is full: the caller answers "busy".
#[derive(Debug)]
pub struct Busy;

/// Handle to the pool; cloning it is cheap. The threads end when the last handle is dropped.
#[derive(Clone)]
pub struct ComputePool {
    jobs: SyncSender<Job>,
}

impl ComputePool {
    pub fn start(threads: usize) -> Self {
        let (jobs, queue) = sync_channel::<Job>(QUEUE_CAPACITY);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("fib-{i}"))
                .spawn(move || work(&queue))
                .expect("BUG: the OS refused a thread for the fib pool at start");
        }
        Self { jobs }
    }

    /// Queues fib(n); the receiver gets the finished reply frame.
    pub fn submit(&self, n: u64) -> Result<oneshot::Receiver<String>, Busy> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Job { n, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // One thread waits in recv while the others wait for the lock; either way they sleep.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // The socket may have closed meanwhile; then nobody wants the answer.
        if !job.reply.is_closed() {
            let _ = job.reply.send(compute::reply(job.n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_submitted_job_comes_back_as_a_reply_frame() {
        let pool = ComputePool::start(1);
        let reply = pool.submit(20).unwrap().await.unwrap();
        assert_eq!(reply, r#"{"type":"fib","n":20,"value":"6765"}"#);
    }
}
