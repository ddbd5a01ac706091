//! Boots side by side: each qemu runs its guest on one host thread (single-threaded TCG,
//! whatever the vCPU count), so a 2-CPU host runs two boots at once, each on a CPU of its
//! own. Generic over the work, so it knows nothing of kernels or scenarios.
use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Mutex,
};

use anyhow::{bail, Result};

/// Boots at once: `PT_VM_JOBS`, else the host's CPUs, at most 2 (the CI machine has 2).
pub fn parallel_boots() -> usize {
    std::env::var("PT_VM_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(2)
        })
        .max(1)
}

/// Runs `run` on every job, `parallel` at a time, the largest `cost` first; the results
/// come back in the jobs' order. An error (a harness failure, not a failed scenario)
/// stops handing out jobs and is returned.
pub fn run_all<J: Sync, R: Send>(
    jobs: &[J],
    parallel: usize,
    cost: impl Fn(&J) -> u32,
    run: impl Fn(&J) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&jobs[i])));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= order.len() || failed.load(Ordering::SeqCst) {
                    break;
                }
                let i = order[n];
                let r = run(&jobs[i]);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    let mut all = results.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(pos) = all.iter().position(|r| matches!(r, Some(Err(_)))) {
        if let Some(Err(e)) = all.swap_remove(pos) {
            return Err(e);
        }
    }
    all.into_iter()
        .map(|r| match r {
            Some(r) => r,
            None => bail!("a job was not run: an earlier harness error stopped the run"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_jobs_order_and_run_side_by_side() {
        let jobs: Vec<u32> = (0..6).collect();
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = run_all(
            &jobs,
            2,
            |j| *j,
            |j| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(30));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(j * 10)
            },
        )
        .unwrap();
        assert_eq!(out, vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_error_is_returned_and_stops_the_rest() {
        let jobs: Vec<u32> = (0..5).collect();
        let ran = AtomicUsize::new(0);
        let r = run_all(
            &jobs,
            1,
            |j| 10 - *j,
            |j| {
                ran.fetch_add(1, Ordering::SeqCst);
                if *j == 0 {
                    bail!("harness broke")
                }
                Ok(())
            },
        );
        assert!(r.unwrap_err().to_string().contains("harness broke"));
        // Cost order runs job 0 first; nothing after it.
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
