//! The shaper on a task of its own. Netlink can be slow: a class created in a tree of
//! 10,000 costs the kernel a walk of the tree under the RTNL lock (`pool.rs`), a rebuild
//! after the IFB was deleted creates every client's classes again, and any other process
//! changing links or qdiscs holds the same lock. None of that may hold up the control task,
//! which answers the API and starts the next session when one ends. So the control task
//! sends [`Job`]s and goes on; the worker carries them out in order, merging the changes that
//! queued up meanwhile into one batch, and sends a [`Report`] when each is in the kernel.
//! Side effects: all of the [`Shaper`]'s, on the worker's task; a refill is tended every
//! [`TEND_EVERY`].

use std::{
    collections::BTreeSet,
    os::fd::{AsRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle};

use super::{Desired, Rates, Shaper, ShapingError};

/// How often the worker takes in the spare classes a refill made and starts the next one.
const TEND_EVERY: Duration = Duration::from_secs(1);
/// The most jobs taken as one batch: behind a slow batch (a crowd at an empty box, each sale
/// creating its classes) thousands queue up, and one netlink batch for all of them would
/// hold megabytes of requests at once for no gain in speed.
const JOBS_PER_BATCH: usize = 256;

/// What the control task asks of the shaper. Carried out in the order sent.
#[derive(Debug)]
pub enum Job {
    /// Bring these minors to these rates (`None`: no client has it; parked as a spare), with
    /// the global caps at `global` (a change of them goes over every class).
    Apply {
        seq: u64,
        global: Rates,
        minors: Vec<(u16, Option<Rates>)>,
    },
    /// Make the trees anew on `lan` and `ifb` (taking over whichever tree is still there) at
    /// `desired`; without TCX, route uploads into the new IFB behind `upload_program` (a
    /// duplicate of the program's fd, so it stays open however long the job waits).
    Rebuild {
        seq: u64,
        lan: String,
        ifb: String,
        desired: Desired,
        classes_ready: usize,
        upload_program: Option<(OwnedFd, &'static str)>,
    },
    /// Keep this many client classes made ahead of need (`Shaper::set_classes_ready`).
    ClassesReady(usize),
}

/// What the worker did, for the control task.
#[derive(Debug)]
pub enum Report {
    /// Every [`Job::Apply`] up to `seq` is in the kernel (`Ok`) or was not all taken (`Err`:
    /// the first failure; the rest went in).
    Applied {
        seq: u64,
        result: Result<(), ShapingError>,
    },
    /// A [`Job::Rebuild`]: the new IFB's index when the trees are at the desired state.
    Rebuilt {
        seq: u64,
        result: Result<u32, ShapingError>,
        took: Duration,
    },
}

/// The control task's end of the worker.
#[derive(Debug)]
pub struct ShaperWorker {
    jobs: mpsc::UnboundedSender<Job>,
    task: JoinHandle<Shaper>,
    spare_classes: Arc<AtomicUsize>,
}

impl ShaperWorker {
    /// Starts the worker on `shaper`, whose trees are at `desired`. The worker keeps its own
    /// copy of the desired state, changed by each job, because the control task's plan moves
    /// on while a batch is in the kernel. Returns it and where its reports arrive.
    #[must_use]
    pub fn spawn(shaper: Shaper, desired: Desired) -> (Self, mpsc::UnboundedReceiver<Report>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let (reports, reported) = mpsc::unbounded_channel();
        let spare_classes = Arc::new(AtomicUsize::new(shaper.spare_classes()));
        let task = tokio::spawn(work(
            shaper,
            desired,
            queue,
            reports,
            Arc::clone(&spare_classes),
        ));
        (
            Self {
                jobs,
                task,
                spare_classes,
            },
            reported,
        )
    }

    /// Queues `job`; never waits. A worker that is gone (it panicked) takes nothing: logged.
    pub fn send(&self, job: Job) {
        if self.jobs.send(job).is_err() {
            tracing::error!("the shaper's task is gone; speed limits are not changed");
        }
    }

    /// Spare classes the shaper held after its last job.
    #[must_use]
    pub fn spare_classes(&self) -> usize {
        self.spare_classes.load(Ordering::Relaxed)
    }

    /// Lets the worker finish what it was sent and hands the shaper back; `None` if its task
    /// panicked.
    pub async fn finish(self) -> Option<Shaper> {
        drop(self.jobs);
        self.task
            .await
            .inspect_err(|error| tracing::error!(%error, "the shaper's task failed"))
            .ok()
    }
}

/// The worker: takes the queued jobs together (up to [`JOBS_PER_BATCH`]), so the changes that
/// arrived during a slow batch go to the kernel as one.
async fn work(
    mut shaper: Shaper,
    mut desired: Desired,
    mut queue: mpsc::UnboundedReceiver<Job>,
    reports: mpsc::UnboundedSender<Report>,
    spare_classes: Arc<AtomicUsize>,
) -> Shaper {
    let mut tend = tokio::time::interval(TEND_EVERY);
    tend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut jobs = Vec::new();
    loop {
        tokio::select! {
            received = queue.recv_many(&mut jobs, JOBS_PER_BATCH) => {
                if received == 0 {
                    break;
                }
            }
            _ = tend.tick() => {
                shaper.tend_spares();
                spare_classes.store(shaper.spare_classes(), Ordering::Relaxed);
                continue;
            }
        }
        let mut batch = Batch::default();
        for job in jobs.drain(..) {
            match job {
                Job::Apply {
                    seq,
                    global,
                    minors,
                } => {
                    desired.global = global;
                    for (minor, rates) in minors {
                        match rates {
                            Some(rates) => desired.clients.insert(minor, rates),
                            None => desired.clients.remove(&minor),
                        };
                        batch.minors.insert(minor);
                    }
                    batch.seq = Some(seq);
                }
                Job::Rebuild {
                    seq,
                    lan,
                    ifb,
                    desired: rebuilt,
                    classes_ready,
                    upload_program,
                } => {
                    batch.apply(&mut shaper, &desired, &reports).await;
                    desired = rebuilt;
                    let started = tokio::time::Instant::now();
                    let result = rebuild(&lan, &ifb, &desired, classes_ready, upload_program).await;
                    let result = result.map(|rebuilt| {
                        let ifindex = rebuilt.ifb_ifindex();
                        shaper = rebuilt;
                        ifindex
                    });
                    send(
                        &reports,
                        Report::Rebuilt {
                            seq,
                            result,
                            took: started.elapsed(),
                        },
                    );
                }
                Job::ClassesReady(count) => shaper.set_classes_ready(count),
            }
        }
        batch.apply(&mut shaper, &desired, &reports).await;
        spare_classes.store(shaper.spare_classes(), Ordering::Relaxed);
    }
    shaper
}

/// The changes taken from the queue since the last apply.
#[derive(Default)]
struct Batch {
    minors: BTreeSet<u16>,
    /// The last [`Job::Apply`] in it; `None` when it is empty.
    seq: Option<u64>,
}

impl Batch {
    /// Applies the batch (if any) and reports it; leaves it empty.
    async fn apply(
        &mut self,
        shaper: &mut Shaper,
        desired: &Desired,
        reports: &mpsc::UnboundedSender<Report>,
    ) {
        let Some(seq) = self.seq.take() else {
            return;
        };
        let minors = std::mem::take(&mut self.minors);
        let result = shaper.apply_changed(desired, &minors).await;
        send(reports, Report::Applied { seq, result });
    }
}

/// A new shaper on `lan` and `ifb`, at `desired`, with uploads routed into its IFB.
async fn rebuild(
    lan: &str,
    ifb: &str,
    desired: &Desired,
    classes_ready: usize,
    upload_program: Option<(OwnedFd, &'static str)>,
) -> Result<Shaper, ShapingError> {
    let mut shaper = Shaper::setup(lan, ifb, desired.global).await?;
    shaper.apply(desired).await?;
    shaper.set_classes_ready(classes_ready);
    if let Some((fd, name)) = upload_program {
        let fd = u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX);
        // Without the filter, uploads pass unshaped (still gated and billed); the trees are
        // fine, so the rebuild stands.
        if let Err(error) = shaper.route_uploads_to_ifb((fd, name)).await {
            tracing::error!(error = %crate::text::chain(&error), "uploads are not shaped");
        }
    }
    Ok(shaper)
}

fn send(reports: &mpsc::UnboundedSender<Report>, report: Report) {
    // The control task is gone only at shutdown, when nothing waits for reports.
    let _ = reports.send(report);
}
