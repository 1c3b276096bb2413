//! The CPU kernels' own fork-join pool, whose workers spin briefly between jobs.
//!
//! A training step runs a few hundred parallel kernels back to back, a few hundred microseconds each. Through
//! rayon's scope each one cost 75-110 us of wake-ups on two threads (the caller sleeps while a worker wakes,
//! spawns, and wakes another), about a tenth of a two-thread resnet18 step. Here the caller takes parts
//! itself, and the workers spin for a while after a job, as OpenMP's threads do, before they sleep. Parts go to
//! whichever thread comes first, so a worker that is late (asleep, or preempted by the data loader) delays
//! nothing: the results do not depend on who ran a part, only on the parts, which the kernels fix.
//!
//! Nested jobs (a part that starts a job) and jobs started while another thread's job runs run their parts
//! one after another on the calling thread: nothing waits on the pool, so nothing can deadlock.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps: longer than the gaps between a step's kernels.
const SPIN: Duration = Duration::from_micros(500);

/// The work of one job: `part(i)` for every part `i`.
type Part<'a> = dyn Fn(usize) + Sync + 'a;

/// What the workers share with the thread that starts a job.
struct Shared {
    /// Counts the jobs started, for idle workers to watch; changed only with `job` locked.
    generation: AtomicUsize,
    /// The current job. Parts are taken with it locked, so a worker late for one job cannot take a part of the
    /// next one with the first one's closure.
    job: Mutex<Job>,
    /// Parts taken and not finished yet.
    pending: AtomicUsize,
    /// The first panic of a worker's part in the current job.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// The current job: its work (`None` between jobs), its number of parts, the next part nobody has taken, and
/// its generation.
struct Job {
    work: Option<JobRef>,
    parts: usize,
    next: usize,
    generation: usize,
}

impl Job {
    /// Takes the next part of job `generation`, counting it as pending.
    fn take(&mut self, generation: usize, pending: &AtomicUsize) -> Option<(JobRef, usize)> {
        let work = self.work.filter(|_| self.generation == generation && self.next < self.parts)?;
        pending.fetch_add(1, Ordering::SeqCst);
        self.next += 1;
        Some((work, self.next - 1))
    }
}

/// The current job's work, its lifetime erased: `run` does not return before every part taken is done.
#[derive(Clone, Copy)]
struct JobRef(*const Part<'static>);
// SAFETY: the pointer is to a `Sync` closure, dereferenced only while `run` (which owns the borrow) waits.
unsafe impl Send for JobRef {}

/// A worker thread and whether it is asleep.
struct Worker {
    thread: Thread,
    asleep: Arc<AtomicBool>,
}

/// The pool: its shared state and its workers (started as jobs need them).
struct Pool {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

thread_local! {
    /// Whether this thread is running a part of a job (a worker, or a caller in its own part).
    static IN_PART: Cell<bool> = const { Cell::new(false) };
}

/// Runs `part(i)` for `i` in `0..parts` on the calling thread and up to `parts - 1` workers (fewer on a CPU with
/// fewer cores), each part taken by whichever thread comes first, and returns when all are done. A panic in any
/// part is raised again here, after every part has finished.
pub(crate) fn run(parts: usize, part: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 || IN_PART.get() {
        return (0..parts).for_each(part);
    }
    // Another thread's job holds the pool: this one runs alone rather than wait for it.
    let mut guard = match POOL.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return (0..parts).for_each(part),
    };
    // No more workers than the CPU has other cores: with `set_num_threads` above that, the extra parts go to
    // whichever thread is free instead of to threads that would spin on a core another one needs.
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = pool(&mut guard, (parts - 1).min(cores - 1));
    let shared = &pool.shared;
    // SAFETY: only the lifetime changes; the workers use the pointer before `pending` reaches zero, and this
    // function does not return (or unwind) before it does.
    let job = JobRef(unsafe { std::mem::transmute::<*const Part<'_>, *const Part<'static>>(part as *const Part<'_>) });
    let generation = {
        let mut current = lock(&shared.job);
        let generation = current.generation + 1;
        *current = Job { work: Some(job), parts, next: 0, generation };
        shared.generation.store(generation, Ordering::SeqCst);
        generation
    };
    for worker in pool.workers.iter().take(parts - 1) {
        if worker.asleep.load(Ordering::SeqCst) {
            worker.thread.unpark();
        }
    }
    // The caller takes parts too, all of them if the workers are slow to come.
    let mine = in_part(|| {
        let mut result = Ok(());
        loop {
            // The lock is let go before the part runs.
            let taken = lock(&shared.job).take(generation, &shared.pending);
            let Some((_, i)) = taken else { break };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| part(i))) {
                result = Err(payload);
            }
            shared.pending.fetch_sub(1, Ordering::Release);
        }
        result
    });
    let mut spins = 0u32;
    while shared.pending.load(Ordering::Acquire) != 0 {
        spins += 1;
        if spins < 1 << 12 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    lock(&shared.job).work = None;
    let theirs = lock(&shared.panic).take();
    drop(guard);
    if let Err(payload) = mine {
        resume_unwind(payload);
    }
    if let Some(payload) = theirs {
        resume_unwind(payload);
    }
}

/// The pool, with at least `workers` workers.
fn pool<'a>(guard: &'a mut MutexGuard<'_, Option<Pool>>, workers: usize) -> &'a mut Pool {
    let pool = guard.get_or_insert_with(|| Pool {
        shared: Arc::new(Shared {
            generation: AtomicUsize::new(0),
            job: Mutex::new(Job { work: None, parts: 0, next: 0, generation: 0 }),
            pending: AtomicUsize::new(0),
            panic: Mutex::new(None),
        }),
        workers: Vec::new(),
    });
    while pool.workers.len() < workers {
        let (index, shared) = (pool.workers.len(), Arc::clone(&pool.shared));
        let asleep = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&asleep);
        let seen = shared.generation.load(Ordering::SeqCst);
        let handle = std::thread::Builder::new()
            .name(format!("tiny-cpu-{}", index + 1))
            .spawn(move || work(&shared, &flag, seen))
            .expect("tiny-tensor: cannot start a CPU worker thread");
        pool.workers.push(Worker { thread: handle.thread().clone(), asleep });
    }
    pool
}

/// A worker's loop: wait for a job, take its parts while there are any left, and again.
fn work(shared: &Shared, asleep: &AtomicBool, mut seen: usize) {
    IN_PART.set(true);
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while shared.generation.load(Ordering::Acquire) == seen {
            spins += 1;
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            if start.elapsed() < SPIN {
                // Between short spins, any other thread ready on this core (the data loader's) runs first.
                std::thread::yield_now();
                continue;
            }
            // Say it sleeps before the last look, so a job started after that look unparks it.
            asleep.store(true, Ordering::SeqCst);
            if shared.generation.load(Ordering::SeqCst) == seen {
                std::thread::park();
            }
            asleep.store(false, Ordering::SeqCst);
        }
        seen = shared.generation.load(Ordering::SeqCst);
        loop {
            let taken = lock(&shared.job).take(seen, &shared.pending);
            let Some((JobRef(part), i)) = taken else { break };
            // SAFETY: `run` keeps the closure alive until `pending` is zero, which needs this part's decrement.
            let part = unsafe { &*part };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| part(i))) {
                lock(&shared.panic).get_or_insert(payload);
            }
            shared.pending.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Runs `f` with this thread marked as inside a part, so jobs it starts run on it alone.
fn in_part<R>(f: impl FnOnce() -> R) -> R {
    IN_PART.set(true);
    let r = f();
    IN_PART.set(false);
    r
}

/// Locks `m`, whatever a panic left in it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::run;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_part_runs_once_nested_jobs_included() {
        let hits: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..200 {
            run(4, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
                // A job started inside a part runs on that part's thread.
                run(2, &|_| {});
            });
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 200));
    }

    #[test]
    fn a_panicking_part_panics_the_caller_after_the_others_finish() {
        let done = AtomicUsize::new(0);
        let result = std::panic::catch_unwind(|| {
            run(3, &|i| {
                if i == 2 {
                    panic!("part 2");
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert!(result.is_err());
        assert_eq!(done.load(Ordering::Relaxed), 2);
        // The pool still works.
        let count = AtomicUsize::new(0);
        run(3, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 3);
    }
}
