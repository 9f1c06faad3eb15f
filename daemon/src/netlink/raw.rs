//! A routing netlink socket read through tokio, and the walk over the messages and attributes
//! it returns, for the watchers that parse what they need in place (`bridge_fdb`,
//! `neighbour_tables`, and the blocking `neighbours` reader) rather than have every attribute of
//! every message allocated. Sends only what its callers ask for.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tokio::io::{Interest, unix::AsyncFd};

// uapi linux/netlink.h
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
/// The attribute type without its `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
#[expect(clippy::cast_possible_truncation, reason = "AF_NETLINK is 16")]
const SOCKADDR_FAMILY: libc::sa_family_t = libc::AF_NETLINK as libc::sa_family_t;
#[expect(clippy::cast_possible_truncation, reason = "a 12-byte struct")]
const SOCKADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
#[expect(clippy::cast_possible_truncation, reason = "4 bytes")]
const INT_LEN: libc::socklen_t = size_of::<libc::c_int>() as libc::socklen_t;
/// The kernel fills at most one page-sized skb per `recv` of a dump; 64 KiB holds any.
const RECEIVE_BUFFER_LEN: usize = 64 * 1024;
/// The socket's queue in the kernel: room for a burst of notifications (a flood of new
/// neighbours, a bridge relearning every MAC) while the task is elsewhere.
const SOCKET_QUEUE_BYTES: libc::c_int = 1024 * 1024;

/// A message the kernel sent that does not hold together.
#[derive(Debug, thiserror::Error)]
#[error("the kernel sent a malformed netlink message")]
pub struct Malformed;

impl From<Malformed> for io::Error {
    fn from(malformed: Malformed) -> Self {
        Self::new(io::ErrorKind::InvalidData, malformed)
    }
}

/// A non-blocking `NETLINK_ROUTE` socket registered with the runtime, with its buffer.
pub struct RawSocket {
    socket: AsyncFd<OwnedFd>,
    buffer: Vec<u8>,
    sequence: u32,
}

impl RawSocket {
    /// Opens a socket in the calling thread's network namespace, subscribed to the multicast
    /// `groups` (an `RTMGRP_*` mask; 0 for none).
    pub fn open(groups: u32) -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the fd is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let queue_bytes = SOCKET_QUEUE_BYTES;
        // SAFETY: the option value is a valid c_int for the duration of the call. Best
        // effort: a smaller queue only loses a burst sooner, which the callers recover from.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const queue_bytes).cast(),
                INT_LEN,
            );
        }
        if groups != 0 {
            let mut address = kernel_address();
            address.nl_groups = groups;
            // SAFETY: `address` is a valid sockaddr_nl for the duration of the call.
            let bound = unsafe {
                libc::bind(
                    socket.as_raw_fd(),
                    (&raw const address).cast(),
                    SOCKADDR_LEN,
                )
            };
            if bound < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: the socket is owned by the AsyncFd, so its fd stays open and the same for as
        // long as it is registered.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)?;
        Ok(Self {
            socket,
            buffer: vec![0; RECEIVE_BUFFER_LEN],
            sequence: 0,
        })
    }

    /// Asks the kernel for a dump of `kind` with the family header `body`; returns the
    /// sequence number its answers carry.
    pub fn dump(&mut self, kind: u16, body: &[u8]) -> io::Result<u32> {
        self.sequence = self.sequence.wrapping_add(1);
        let request = request(kind, NLM_F_REQUEST | NLM_F_DUMP, self.sequence, body);
        send_to_kernel(self.socket.get_ref().as_raw_fd(), &request)?;
        Ok(self.sequence)
    }

    /// Waits for the next datagram: dump answers and notifications alike. `ENOBUFS` means
    /// notifications were lost to a full queue.
    pub async fn receive(&mut self) -> io::Result<&[u8]> {
        loop {
            let mut ready = self.socket.readable().await?;
            let buffer = &mut self.buffer;
            let received = ready.try_io(|socket| {
                // SAFETY: `buffer` is valid for writes of its length during the call.
                let received = unsafe {
                    libc::recv(
                        socket.get_ref().as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                    )
                };
                usize::try_from(received).map_err(|_| io::Error::last_os_error())
            });
            match received {
                Ok(Ok(len)) => return Ok(&self.buffer[..len]),
                Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(error)) => return Err(error),
                // Not readable after all; `try_io` cleared the readiness.
                Err(_would_block) => {}
            }
        }
    }
}

/// A request: the netlink header (`kind`, `flags`, `sequence`) and `body`.
#[must_use]
pub fn request(kind: u16, flags: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut request = Vec::with_capacity(len);
    request.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    request.extend_from_slice(&kind.to_ne_bytes());
    request.extend_from_slice(&flags.to_ne_bytes());
    request.extend_from_slice(&sequence.to_ne_bytes());
    // pid 0: the kernel fills in ours.
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(body);
    request
}

/// Sends `request` to the kernel on the netlink socket `fd`.
pub fn send_to_kernel(fd: std::os::fd::RawFd, request: &[u8]) -> io::Result<()> {
    let kernel = kernel_address();
    // SAFETY: `request` and `kernel` are valid buffers of the given lengths for the duration
    // of the call; a bad `fd` makes the call fail, nothing else.
    let sent = unsafe {
        libc::sendto(
            fd,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const kernel).cast(),
            SOCKADDR_LEN,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's address: pid 0, no groups.
fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is pid 0, the kernel.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = SOCKADDR_FAMILY;
    address
}

/// One netlink message: its type, sequence number and what follows the header.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub sequence: u32,
    pub body: &'a [u8],
}

impl Message<'_> {
    /// The error an `NLMSG_ERROR` carries (`None` for an acknowledgement).
    #[must_use]
    pub fn error(&self) -> Option<io::Error> {
        let code = i32::from_ne_bytes(array(self.body, 0));
        (code != 0).then(|| io::Error::from_raw_os_error(-code))
    }
}

/// The messages of one datagram, in order; a message cut short ends the walk with an error.
pub fn messages(mut bytes: &[u8]) -> impl Iterator<Item = Result<Message<'_>, Malformed>> {
    std::iter::from_fn(move || {
        if bytes.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = usize::try_from(u32_at(bytes, 0)).unwrap_or(usize::MAX);
        if len < NLMSG_HDRLEN || len > bytes.len() {
            bytes = &[];
            return Some(Err(Malformed));
        }
        let (message, rest) = bytes.split_at(len);
        bytes = rest.get(align4(len) - len..).unwrap_or_default();
        Some(Ok(Message {
            kind: u16_at(message, 4),
            sequence: u32_at(message, 8),
            body: &message[NLMSG_HDRLEN..],
        }))
    })
}

/// The attributes (type without flags, value) in `bytes`; one cut short ends the walk with an
/// error.
pub fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Malformed>> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(bytes, 0));
        if len < 4 || len > bytes.len() {
            bytes = &[];
            return Some(Err(Malformed));
        }
        let attribute = (u16_at(bytes, 2) & NLA_TYPE_MASK, &bytes[4..len]);
        bytes = bytes.get(align4(len)..).unwrap_or_default();
        Some(Ok(attribute))
    })
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// `N` bytes at `at`, zeros where `bytes` ends first.
#[must_use]
pub fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(source) = bytes.get(at..at + N) {
        out.copy_from_slice(source);
    }
    out
}

#[must_use]
pub fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(array(bytes, at))
}

#[must_use]
pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(array(bytes, at))
}

#[must_use]
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(array(bytes, at))
}

/// Builds messages and attributes as the kernel sends them, for the parsers' tests.
#[cfg(test)]
pub mod build {
    use super::{NLMSG_HDRLEN, align4};

    /// One netlink message.
    pub fn message(kind: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
        let mut message = Vec::new();
        let len = u32::try_from(NLMSG_HDRLEN + body.len()).expect("a small message");
        message.extend_from_slice(&len.to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&0u16.to_ne_bytes());
        message.extend_from_slice(&sequence.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(body);
        message.resize(align4(message.len()), 0);
        message
    }

    /// `header` followed by the attributes, each padded to 4 bytes.
    pub fn with_attributes(header: &[u8], attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = header.to_vec();
        for (kind, value) in attributes {
            let len = u16::try_from(4 + value.len()).expect("a small attribute");
            body.extend_from_slice(&len.to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(value);
            body.resize(align4(body.len()), 0);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_messages_and_attributes_and_stops_at_a_cut() {
        let body = build::with_attributes(&[7, 0, 0, 0], &[(1, b"abc"), (0x8002, &[1, 2])]);
        let mut bytes = build::message(28, 5, &body);
        bytes.extend(build::message(NLMSG_DONE, 5, &[0; 4]));
        let walked: Vec<_> = messages(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(walked.len(), 2);
        assert_eq!((walked[0].kind, walked[0].sequence), (28, 5));
        let attrs: Vec<_> = attributes(&walked[0].body[4..])
            .collect::<Result<_, _>>()
            .unwrap();
        // The nested flag is taken off the type.
        assert_eq!(attrs, vec![(1, &b"abc"[..]), (2, &[1, 2][..])]);
        assert_eq!(walked[1].kind, NLMSG_DONE);

        let cut = &bytes[..bytes.len() - 25];
        assert!(messages(cut).any(|message| message.is_err()));
        let mut lying = body.clone();
        lying[4] = 200;
        assert!(attributes(&lying[4..]).any(|attribute| attribute.is_err()));
    }

    #[test]
    fn an_error_message_carries_its_errno() {
        let error = Message {
            kind: NLMSG_ERROR,
            sequence: 1,
            body: &(-libc::EPERM).to_ne_bytes(),
        };
        assert_eq!(
            error.error().and_then(|e| e.raw_os_error()),
            Some(libc::EPERM)
        );
        let ack = Message {
            kind: NLMSG_ERROR,
            sequence: 1,
            body: &[0; 4],
        };
        assert!(ack.error().is_none());
    }
}
