//! Background work of the client: a fixed set of worker threads taking jobs from a
//! queue, and [`Task`], a result one thread produces and others wait for.
//!
//! A pool of zero workers runs every job inline on the caller's thread. The simulator
//! uses that: it schedules every store call of a client on that client's own thread, so
//! uploads and fetches must not run anywhere else.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// Worker threads with a shared job queue.
pub struct Pool {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// A pool of `threads` workers named `name-N`; `0` runs jobs inline.
    pub fn new(name: &str, threads: usize) -> Pool {
        let shared: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let workers = (0..threads)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || work(&shared))
                    .expect("spawn a client worker thread")
            })
            .collect();
        Pool { shared, workers }
    }

    /// Whether jobs run on the caller's thread.
    pub fn is_inline(&self) -> bool {
        self.workers.is_empty()
    }

    /// Runs `job` on a worker (or now, inline).
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        if self.is_inline() {
            return job();
        }
        let (queue, ready) = &*self.shared;
        lock(queue).jobs.push_back(Box::new(job));
        ready.notify_one();
    }
}

fn work(shared: &(Mutex<Queue>, Condvar)) {
    let (queue, ready) = shared;
    loop {
        let job = {
            let mut q = lock(queue);
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                q = ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        job();
    }
}

impl Drop for Pool {
    /// Finishes the queued jobs, then stops the workers.
    fn drop(&mut self) {
        let (queue, ready) = &*self.shared;
        lock(queue).closed = true;
        ready.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A value that one thread will produce and any number of threads may wait for.
pub struct Task<T> {
    value: Mutex<Option<T>>,
    done: Condvar,
}

impl<T: Clone> Task<T> {
    pub fn new() -> Arc<Task<T>> {
        Arc::new(Task {
            value: Mutex::new(None),
            done: Condvar::new(),
        })
    }

    pub fn complete(&self, value: T) {
        *lock(&self.value) = Some(value);
        self.done.notify_all();
    }

    /// The value, once produced.
    pub fn wait(&self) -> T {
        let mut v = lock(&self.value);
        loop {
            if let Some(value) = &*v {
                return value.clone();
            }
            v = self.done.wait(v).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The value if it has been produced.
    pub fn peek(&self) -> Option<T> {
        lock(&self.value).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn inline_pool_runs_at_once_and_workers_finish_the_queue() {
        let n = Arc::new(AtomicUsize::new(0));
        let inline = Pool::new("t", 0);
        let m = n.clone();
        inline.spawn(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 1);

        let pool = Pool::new("t", 3);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let t = Task::new();
                let (t2, m) = (t.clone(), n.clone());
                pool.spawn(move || {
                    m.fetch_add(1, Ordering::SeqCst);
                    t2.complete(i * 2);
                });
                t
            })
            .collect();
        for (i, t) in tasks.iter().enumerate() {
            assert_eq!(t.wait(), i * 2);
        }
        drop(pool);
        assert_eq!(n.load(Ordering::SeqCst), 51);
    }
}
