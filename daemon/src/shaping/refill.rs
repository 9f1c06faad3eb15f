//! Grows the pool of spare classes ahead of need, off the control task: a thread of its own
//! (at a lower CPU priority, with its own netlink socket) creates parked classes and their
//! leaves for the next minors the allocator will hand out, in both trees, and reports each
//! group of minors as it is done. The kernel's cost of creating a class grows with the
//! classes already there (see `pool.rs`); here it is paid while no sale waits for it.
//!
//! The thread only *creates*, exclusively (`NLM_F_CREATE | NLM_F_EXCL`): if the control task
//! got to a minor first (a sale that found no spare creates its classes itself, as before), the
//! thread's request fails with EEXIST and changes nothing, and the minor is left to the
//! shaper's books; if the thread got there first, the control task's create-or-replace
//! changes what the thread made. Either order ends with the client's rates. Side effects:
//! spawns a thread that joins the shaper's network namespace if it is not already in it,
//! opens a routing netlink socket there and creates HTB classes and leaf qdiscs.

use std::{
    fs::File,
    io,
    os::unix::fs::MetadataExt as _,
    sync::{Arc, mpsc},
};

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};

use super::{Rates, netlink, pool::PARKED};

/// Minors whose four requests (class and leaf in each tree) travel in one netlink batch of
/// 64 messages, and are reported together.
const MINORS_PER_GROUP: usize = 16;

/// How a spare came out: its rates as installed (0 in a direction where a request failed:
/// unknown, re-sent when the class is used), or `None` when the control task made the class
/// first.
pub(crate) type Made = (u16, Option<Rates>);

/// The four requests for one minor, in order: LAN class, LAN leaf, IFB class, IFB leaf.
pub(crate) type MinorRequests = (u16, [netlink::Request; 4]);

/// This thread's network namespace.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// The network namespace the shaper was set up in (its netlink socket is there): a refill
/// thread works there too, wherever the thread that starts it is.
#[derive(Debug)]
pub(crate) struct Netns {
    file: File,
    inode: u64,
}

impl Netns {
    /// The calling thread's.
    pub(crate) fn current() -> io::Result<Netns> {
        let file = File::open(THREAD_NETNS)?;
        let inode = file.metadata()?.ino();
        Ok(Netns { file, inode })
    }

    /// Moves the calling thread into this namespace, unless it is there already (the usual
    /// case: a daemon lives in one namespace, and joining one needs `CAP_SYS_ADMIN`, which
    /// the service does not have).
    fn enter(&self) -> io::Result<()> {
        if std::fs::metadata(THREAD_NETNS)?.ino() == self.inode {
            return Ok(());
        }
        nix::sched::setns(&self.file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }
}

/// A refill under way.
#[derive(Debug)]
pub(crate) struct Refill {
    made: mpsc::Receiver<Vec<Made>>,
}

impl Refill {
    /// Starts creating the classes of `requests` on a thread of its own. `None` (logged) when
    /// no thread can be started; the pool then grows as classes are freed.
    pub(crate) fn start(netns: Arc<Netns>, requests: Vec<MinorRequests>) -> Option<Refill> {
        let (sender, made) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("hotspotd-classes".to_owned())
            .spawn(move || {
                if let Err(error) = netns.enter() {
                    tracing::warn!(error = %crate::text::chain(&error), "cannot join the shaper's network namespace to create spare classes");
                    return;
                }
                create(requests, &sender);
            });
        match spawned {
            Ok(_) => Some(Refill { made }),
            Err(error) => {
                tracing::warn!(error = %crate::text::chain(&error), "cannot start the thread that creates spare classes; classes are created as clients need them");
                None
            }
        }
    }

    /// What was made since the last call, and whether the refill is over.
    pub(crate) fn take(&self) -> (Vec<Made>, bool) {
        let mut made = Vec::new();
        loop {
            match self.made.try_recv() {
                Ok(group) => made.extend(group),
                Err(mpsc::TryRecvError::Empty) => return (made, false),
                Err(mpsc::TryRecvError::Disconnected) => return (made, true),
            }
        }
    }
}

/// Marks a request as an exclusive create (see the module's doc).
pub(crate) fn exclusive(mut request: netlink::Request) -> netlink::Request {
    request.header.flags = NLM_F_CREATE | NLM_F_EXCL;
    request
}

/// The thread's body: sends the requests group by group and reports each group.
fn create(requests: Vec<MinorRequests>, made: &mpsc::Sender<Vec<Made>>) {
    // Behind the control task and the reader for the CPU: sales and polls come first. Per
    // thread on Linux; failing leaves the default priority, which is only slower for them.
    // SAFETY: setpriority on the calling thread (who = 0) with a plain integer; no memory is
    // passed.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(error = %crate::text::chain(&error), "cannot create spare classes");
            return;
        }
    };
    runtime.block_on(async {
        let mut connection = match netlink::Connection::open() {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(error = %crate::text::chain(&error), "cannot open a netlink socket to create spare classes");
                return;
            }
        };
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let group: Vec<MinorRequests> = requests.by_ref().take(MINORS_PER_GROUP).collect();
            let minors: Vec<u16> = group.iter().map(|(minor, _)| *minor).collect();
            let batch = group.into_iter().flat_map(|(_, four)| four).collect();
            let results = connection.execute(batch).await;
            let outcome = minors
                .iter()
                .zip(results.chunks(4))
                .map(|(&minor, four)| (minor, outcome(four)))
                .collect();
            if made.send(outcome).is_err() {
                // The shaper is gone (a rebuild or a stop): nobody wants the rest.
                return;
            }
        }
    });
}

/// One minor's result from its four requests' (see [`MinorRequests`]).
fn outcome(four: &[Result<(), netlink::RequestError>]) -> Option<Rates> {
    let exists = |result: &Result<(), netlink::RequestError>| {
        result.as_ref().err().and_then(netlink::RequestError::errno) == Some(libc::EEXIST)
    };
    if four.len() != 4 || exists(&four[0]) || exists(&four[2]) {
        return None;
    }
    let installed = |class: usize, kbit: u64| {
        if four[class].is_ok() && four[class + 1].is_ok() {
            kbit
        } else {
            0
        }
    };
    Some(Rates {
        down_kbit: installed(0, PARKED.down_kbit),
        up_kbit: installed(2, PARKED.up_kbit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(errno: i32) -> Result<(), netlink::RequestError> {
        Err(netlink::RequestError::Kernel {
            errno,
            reason: None,
        })
    }

    #[test]
    fn a_minor_is_parked_where_its_class_and_leaf_went_in() {
        assert_eq!(outcome(&[Ok(()), Ok(()), Ok(()), Ok(())]), Some(PARKED));
        assert_eq!(
            outcome(&[Ok(()), refused(libc::ENOMEM), Ok(()), Ok(())]),
            Some(Rates {
                down_kbit: 0,
                up_kbit: PARKED.up_kbit
            }),
            "a failed leaf leaves the download side unknown"
        );
    }

    #[test]
    fn a_minor_the_control_task_made_first_is_left_alone() {
        assert_eq!(
            outcome(&[refused(libc::EEXIST), refused(libc::EEXIST), Ok(()), Ok(())]),
            None
        );
        assert_eq!(
            outcome(&[Ok(()), Ok(()), refused(libc::EEXIST), Ok(())]),
            None
        );
    }
}
