//! [`Datapath`]: starts the engine on its own thread and lets other threads run control
//! jobs on it. Jobs run between batches, so control never holds up forwarding for long.

use std::sync::Arc;
use std::sync::mpsc::{Sender, channel, sync_channel};
use std::thread::JoinHandle;

use mio::{Poll, Waker};

use crate::engine::{Engine, Job, WAKER};
use crate::error::DpError;

/// A running datapath.
#[derive(Debug)]
pub struct Datapath {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Datapath {
    /// Starts the datapath thread with no bridges.
    pub fn start() -> Result<Datapath, DpError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| DpError::Io { what, source }
        };
        let poll = Poll::new().map_err(io("epoll_create"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io("eventfd"))?);
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("vbr-datapath".into())
            .spawn(move || {
                let mut engine = Engine::new(poll);
                let run =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.run(&rx)));
                if run.is_err() {
                    // Without its datapath the daemon is useless: exit so a supervisor
                    // restarts it, rather than answering "stopped" forever.
                    tracing::error!("the datapath thread panicked; exiting");
                    std::process::exit(70);
                }
                // Dropping the engine closes every port: TAPs vanish, promisc is undone.
                drop(engine);
            })
            .map_err(io("spawning the datapath thread"))?;
        Ok(Datapath {
            jobs: tx,
            waker,
            thread: Some(thread),
        })
    }

    /// Runs `f` on the datapath thread and returns its result.
    pub fn call<R, F>(&self, f: F) -> Result<R, DpError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Engine) -> R + Send + 'static,
    {
        let (tx, rx) = sync_channel(1);
        let job: Job = Box::new(move |e: &mut Engine| {
            let _ = tx.send(f(e));
        });
        self.jobs.send(job).map_err(|_| DpError::Stopped)?;
        self.waker.wake().map_err(|_| DpError::Stopped)?;
        rx.recv().map_err(|_| DpError::Stopped)
    }

    /// Stops the thread, closing every port.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.call(|e| e.stopping = true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}
