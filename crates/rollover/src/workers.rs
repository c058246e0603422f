//! Workers stand or fall together.
//!
//! Every worker takes the messages of the calls whose Call-ID hashes to it, whichever
//! worker's socket they arrived on. A worker that stopped on its own (its runtime or its
//! sockets failing at start, or a panic in a build that unwinds) would leave its share of
//! calls in a queue nobody reads while the others ran on: half the calls unanswered with
//! the process up. So a worker that ends before shutdown stops the proxy, which exits with
//! an error for the service manager to restart it.

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Told, by [`Ended`], which workers have ended.
pub(crate) struct Watch {
    tx: UnboundedSender<usize>,
    rx: UnboundedReceiver<usize>,
}

impl Watch {
    pub(crate) fn new() -> Watch {
        let (tx, rx) = unbounded_channel();
        Watch { tx, rx }
    }

    /// The guard a worker's thread holds for as long as it runs.
    pub(crate) fn guard(&self, worker: usize) -> Ended {
        Ended {
            worker,
            tx: self.tx.clone(),
        }
    }

    /// The first worker to end. Pending for as long as all run.
    pub(crate) async fn first_ended(&mut self) -> usize {
        match self.rx.recv().await {
            Some(worker) => worker,
            // Never: `self` keeps a sender.
            None => std::future::pending().await,
        }
    }
}

/// Says its worker ended when dropped: on return, on error and while a panic unwinds.
pub(crate) struct Ended {
    worker: usize,
    tx: UnboundedSender<usize>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.tx.send(self.worker);
    }
}

/// What the workers' threads ended with, once joined: the failures, worded for the log.
pub(crate) fn failures(
    results: impl IntoIterator<Item = (usize, std::thread::Result<anyhow::Result<()>>)>,
) -> Vec<String> {
    results
        .into_iter()
        .filter_map(|(worker, r)| match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("worker {worker} failed: {e:#}")),
            Err(_) => Some(format!("worker {worker} panicked")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn first_within(watch: &mut Watch, secs: u64) -> Option<usize> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(secs), watch.first_ended())
                .await
                .ok()
        })
    }

    #[test]
    fn a_worker_that_returns_early_is_reported_while_the_others_run() {
        let mut watch = Watch::new();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let g0 = watch.guard(0);
        let running = std::thread::spawn(move || {
            let _g = g0;
            let _ = wait.recv();
        });
        let g1 = watch.guard(1);
        let failed = std::thread::spawn(move || -> anyhow::Result<()> {
            let _g = g1;
            Err(anyhow::anyhow!("starting a worker's runtime"))
        });
        assert_eq!(first_within(&mut watch, 5), Some(1));
        // Worker 0 still runs: nothing more is reported until it ends.
        assert_eq!(first_within(&mut watch, 0), None);
        let _ = release.send(());
        running.join().unwrap();
        assert_eq!(first_within(&mut watch, 5), Some(0));
        let out = failures([(0, Ok(Ok(()))), (1, failed.join())]);
        assert_eq!(out, ["worker 1 failed: starting a worker's runtime"]);
    }

    #[test]
    fn a_worker_that_panics_is_reported_and_counted_as_a_failure() {
        let mut watch = Watch::new();
        let g = watch.guard(3);
        let t = std::thread::spawn(move || -> anyhow::Result<()> {
            let _g = g;
            panic!("a bug in a worker");
        });
        assert_eq!(first_within(&mut watch, 5), Some(3));
        assert_eq!(failures([(3, t.join())]), ["worker 3 panicked"]);
    }

    #[test]
    fn nothing_is_reported_while_every_worker_runs() {
        let mut watch = Watch::new();
        let _g = watch.guard(0);
        assert_eq!(first_within(&mut watch, 0), None);
        assert!(failures([(0, Ok(Ok(()))), (1, Ok(Ok(())))]).is_empty());
    }
}
