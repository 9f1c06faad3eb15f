//! Tests only: every error of the daemon that has a cause says it once when its chain is
//! shown. The variants name what failed and keep the cause only as their `source()`; a
//! message that also wrote `{source}` would print the cause twice in a log line or an answer.

use std::{error::Error, io, path::PathBuf};

use crate::{
    api::ListenError,
    bpf::{BatchError, BpfError},
    client::ClientError,
    config::ConfigError,
    control::{CommandError, ControlError},
    netlink::NetlinkError,
    portal::routes::RoutesError,
    run::{ReleaseError, RunError},
    sessions::{EngineError, InvalidSession},
    shaping::{ClassId, DesiredError, RequestError, ShapingError},
    store::{SourceError, StoreError},
};

/// The cause at the end of every chain: its text must appear exactly once.
const CAUSE: &str = "the disk is on fire";

fn cause() -> io::Error {
    io::Error::other(CAUSE)
}

fn path() -> PathBuf {
    PathBuf::from("/var/lib/hotspotd/sessions.sqlite")
}

fn syscall() -> aya::sys::SyscallError {
    aya::sys::SyscallError {
        call: "bpf_link_create",
        io_error: cause(),
    }
}

fn request() -> RequestError {
    RequestError::Kernel {
        errno: libc::EBUSY,
        reason: Some(CAUSE.to_owned()),
    }
}

fn invalid() -> InvalidSession {
    InvalidSession::NoTime { kind: "time" }
}

fn sql() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        Some(CAUSE.to_owned()),
    )
}

fn store() -> StoreError {
    StoreError::Io {
        path: path(),
        source: cause(),
    }
}

fn bpf() -> BpfError {
    BpfError::MapFd {
        name: "USAGE",
        source: cause(),
    }
}

fn netlink() -> NetlinkError {
    NetlinkError::Open(cause())
}

fn shaping() -> ShapingError {
    ShapingError::Open(cause())
}

async fn join_error() -> tokio::task::JoinError {
    let task = tokio::spawn(std::future::pending::<()>());
    task.abort();
    match task.await {
        Err(error) => error,
        Ok(()) => panic!("an aborted task that never ends finished"),
    }
}

/// A real `hyper::Error` (it has no public constructor): a client reading garbage for an
/// answer.
async fn hyper_error() -> hyper::Error {
    use tokio::io::AsyncWriteExt as _;
    let (client, mut server) = tokio::io::duplex(1024);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
            .await
            .expect("handshake over a pipe");
    tokio::spawn(connection);
    server
        .write_all(b"this is not HTTP\r\n\r\n")
        .await
        .expect("write the garbage");
    let request = hyper::Request::new(http_body_util::Empty::<hyper::body::Bytes>::new());
    sender
        .send_request(request)
        .await
        .expect_err("garbage is not an answer")
}

/// Every variant with a cause, of every error type in the crate that has one, with the text
/// of the cause at the end of its chain.
#[expect(
    clippy::too_many_lines,
    reason = "a list of values, one per variant; splitting it would hide which are missing"
)]
async fn every_error_with_a_cause() -> Vec<(Box<dyn Error + Send + Sync>, String)> {
    let mut all: Vec<(Box<dyn Error + Send + Sync>, String)> = Vec::new();
    let mut add = |error: Box<dyn Error + Send + Sync>| {
        let mut last: &(dyn Error + 'static) = error.as_ref();
        while let Some(next) = last.source() {
            last = next;
        }
        let text = last.to_string();
        all.push((error, text));
    };

    add(Box::new(ConfigError::Read {
        path: path(),
        source: cause(),
    }));
    add(Box::new(ConfigError::Merge {
        origin: "HOTSPOTD__API__SOCKET".to_owned(),
        source: config::ConfigError::Message(CAUSE.to_owned()),
    }));

    add(Box::new(netlink()));
    add(Box::new(NetlinkError::Dump {
        what: "links",
        source: rtnetlink::Error::RequestFailed,
    }));
    add(Box::new(NetlinkError::Neighbours(cause())));

    add(Box::new(ListenError::Folder {
        path: path(),
        source: cause(),
    }));
    add(Box::new(ListenError::Tcp {
        address: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
        source: cause(),
    }));
    add(Box::new(ListenError::Bind {
        path: path(),
        source: cause(),
    }));

    add(Box::new(ClientError::Connect {
        socket: path(),
        source: cause(),
    }));
    add(Box::new(ClientError::Http {
        socket: path(),
        source: hyper_error().await,
    }));
    add(Box::new(ClientError::Decode {
        source: serde_json::from_str::<u8>("x").expect_err("x is not a number"),
    }));

    add(Box::new(shaping()));
    add(Box::new(ShapingError::Ifb {
        iface: "ifb0".to_owned(),
        action: "create",
        source: request(),
    }));
    add(Box::new(ShapingError::Qdisc {
        iface: "wlan0".to_owned(),
        action: "add",
        kind: "htb",
        parent: ClassId(0x0001_0001),
        source: request(),
    }));
    add(Box::new(ShapingError::Class {
        iface: "wlan0".to_owned(),
        action: "change",
        classid: ClassId(0x0001_0010),
        source: request(),
    }));
    add(Box::new(ShapingError::Netlink {
        what: "list the qdiscs",
        source: request(),
    }));
    add(Box::new(ShapingError::Desired(DesiredError::ZeroGlobal {
        direction: "down",
    })));

    add(Box::new(EngineError::InvalidSession {
        id: 7,
        source: invalid(),
    }));

    add(Box::new(CommandError::Invalid(invalid())));
    add(Box::new(CommandError::Engine(
        EngineError::InvalidSession {
            id: 7,
            source: invalid(),
        },
    )));
    add(Box::new(CommandError::Store(store())));

    add(Box::new(ControlError::Bpf(bpf())));
    add(Box::new(ControlError::Netlink(netlink())));
    add(Box::new(ControlError::Store(store())));
    add(Box::new(ControlError::Events(cause())));
    // `control::reader::ReadError` is private to `control`: reached through `From`.
    add(Box::new(ControlError::Read(bpf().into())));
    add(Box::new(ControlError::Read(netlink().into())));
    add(Box::new(ControlError::ReaderThread(cause())));

    add(Box::new(SourceError::Store(store())));

    add(Box::new(store()));
    add(Box::new(StoreError::Open {
        path: path(),
        source: sql(),
    }));
    add(Box::new(StoreError::Migrate {
        path: path(),
        from: 1,
        source: sql(),
    }));
    add(Box::new(StoreError::OutOfRange { source: invalid() }));
    add(Box::new(StoreError::Sql {
        op: "save a session",
        source: sql(),
    }));
    add(Box::new(StoreError::Thread { source: cause() }));

    add(Box::new(RunError::Bpf(bpf())));
    add(Box::new(RunError::Netlink(netlink())));
    add(Box::new(RunError::Listen(ListenError::Bind {
        path: path(),
        source: cause(),
    })));
    add(Box::new(RunError::Control(ControlError::Events(cause()))));
    add(Box::new(RunError::Shaping(shaping())));
    add(Box::new(RunError::Store(store())));
    add(Box::new(RunError::Task(join_error().await)));

    add(Box::new(RunError::Redirect(
        crate::portal::redirect::RedirectListenError::new("br-lan", cause()),
    )));
    add(Box::new(RunError::SteeringRoutes(RoutesError::Open(
        cause(),
    ))));

    add(Box::new(ReleaseError::Bpf(bpf())));
    add(Box::new(ReleaseError::Shaping(shaping())));
    add(Box::new(ReleaseError::SteeringRoutes(RoutesError::Open(
        cause(),
    ))));

    add(Box::new(BatchError::Syscall(cause())));

    add(Box::new(BpfError::PinDir {
        path: path(),
        source: cause(),
    }));
    add(Box::new(BpfError::Load(aya::EbpfError::FileError {
        path: path(),
        error: cause(),
    })));
    add(Box::new(BpfError::Program {
        name: "lan_ingress",
        source: aya::programs::ProgramError::SyscallError(syscall()),
    }));
    add(Box::new(BpfError::Attach {
        name: "lan_ingress",
        iface: "wlan0".to_owned(),
        source: aya::programs::ProgramError::SyscallError(syscall()),
    }));
    add(Box::new(BpfError::Link {
        name: "lan_ingress",
        source: aya::programs::links::LinkError::SyscallError(syscall()),
    }));
    add(Box::new(BpfError::Detach {
        name: "lan_ingress",
        iface: "wlan0".to_owned(),
        source: aya::programs::tc::TcError::IoError(cause()),
    }));
    add(Box::new(BpfError::Release {
        path: path(),
        source: cause(),
    }));
    add(Box::new(BpfError::PinLink {
        path: path(),
        source: aya::pin::PinError::SyscallError(syscall()),
    }));
    add(Box::new(BpfError::Map {
        name: "USAGE",
        source: aya::maps::MapError::SyscallError(syscall()),
    }));
    add(Box::new(bpf()));
    add(Box::new(BpfError::Batch {
        name: "USAGE",
        source: BatchError::Syscall(cause()),
    }));
    all
}

#[tokio::test]
async fn every_error_says_its_cause_once() {
    for (error, cause) in every_error_with_a_cause().await {
        let top = error.to_string();
        // anyhow's `{:#}` adds nothing of its own: what it shows twice, the error wrote twice.
        let shown = format!("{:#}", anyhow::anyhow!(error));
        assert_eq!(
            shown.matches(cause.as_str()).count(),
            1,
            "the cause {cause:?} is not said exactly once in {shown:?}"
        );
        let parts: Vec<&str> = shown.split(": ").collect();
        for (at, part) in parts.iter().enumerate() {
            assert!(
                !parts[at + 1..].contains(part),
                "{part:?} is said twice in {shown:?}"
            );
        }
        assert!(
            shown.starts_with(&top),
            "{shown:?} does not start with {top:?}"
        );
    }
}

#[tokio::test]
async fn the_line_shown_to_people_is_the_whole_chain() {
    for (error, cause) in every_error_with_a_cause().await {
        let line = crate::text::chain_string(error.as_ref());
        assert_eq!(line, format!("{:#}", anyhow::anyhow!(error)));
        assert!(
            line.ends_with(&cause),
            "{line:?} does not end with {cause:?}"
        );
    }
}
