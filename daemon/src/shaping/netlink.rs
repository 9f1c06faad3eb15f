//! Routing netlink for shaping: builds the tc and link messages (HTB options are raw NLAs,
//! which `netlink-packet-route` does not model), sends them in ordered batches on one socket,
//! and parses the dumps read back at start-up. Side effects: opens a netlink socket in the
//! calling thread's network namespace and spawns its driver task; every request changes the
//! kernel's traffic control or link state.

use std::{collections::BTreeMap, io, time::Duration};

use futures::StreamExt as _;
use rtnetlink::{
    LinkIfb, LinkUnspec,
    packet_core::{
        DefaultNla, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
        NLM_F_REQUEST, NetlinkMessage, NetlinkPayload, NlasIterator,
    },
    packet_route::{
        RouteNetlinkMessage,
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
        tc::{TcAttribute, TcHandle, TcMessage, TcOption, TcQdiscFqCodelOption},
    },
    proto::{self, ConnectionHandle},
    sys::{AsyncSocket as _, SocketAddr, protocols::NETLINK_ROUTE},
};

use super::htb::{
    self, HtbOpt, LeafSpec, TCA_HTB_CEIL64, TCA_HTB_INIT, TCA_HTB_PARMS, TCA_HTB_RATE64,
};

/// `TCA_OPTIONS`, for qdiscs whose options are a bare struct rather than nested attributes.
const TCA_OPTIONS: u16 = 2;
/// `NLMSGERR_ATTR_MSG`: the kernel's human-readable reason in an extended ACK.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Bytes of `struct nlmsghdr`, echoed in an error ACK before its attributes (with
/// `NETLINK_CAP_ACK`, the echo stops there).
const NLMSG_HEADER_LEN: usize = 16;

/// Requests per datagram. The kernel handles a datagram's messages in order, in the sending
/// syscall, and queues every ACK before we read any: 64 ACKs (about 700 bytes of socket
/// memory each) stay well inside the default 208 KiB receive buffer, where overflowing it
/// would lose ACKs.
const BATCH_MESSAGES: usize = 64;
/// How long the kernel may take to answer one batch before we give up on it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The kernel refused it, with its errno and, where it gave one, its reason.
    #[error("{}{}", io::Error::from_raw_os_error(*.errno), .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Kernel { errno: i32, reason: Option<String> },
    #[error("the netlink connection is closed")]
    Closed,
    #[error("no reply from the kernel within {0:?}")]
    Timeout(Duration),
    #[error("the kernel's reply was not {expected}")]
    Unexpected { expected: &'static str },
}

impl RequestError {
    /// The errno, when the kernel refused the request.
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            RequestError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// One routing netlink socket and its driver task (aborted on drop).
#[derive(Debug)]
pub(crate) struct Connection {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    driver: tokio::task::JoinHandle<()>,
    /// Change requests sent so far (not counting reads), for tests and benchmarks.
    changes_sent: u64,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Opens the socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Connection> {
        let (mut connection, handle, _unsolicited) =
            proto::new_connection::<RouteNetlinkMessage>(NETLINK_ROUTE)?;
        // ACKs are how a batch reports which of its requests succeeded.
        connection.set_forward_ack(true);
        let socket = connection.socket_mut().socket_mut();
        // The kernel's reason ("Specified qdisc kind is unknown") in error ACKs, without the
        // echo of the whole request.
        socket.set_ext_ack(true)?;
        socket.set_cap_ack(true)?;
        let driver = tokio::spawn(connection);
        Ok(Connection {
            handle,
            driver,
            changes_sent: 0,
        })
    }

    pub(crate) fn changes_sent(&self) -> u64 {
        self.changes_sent
    }

    /// Sends change requests in order, in batches, and returns one result per request. The
    /// kernel executes them in order, so a request may depend on an earlier one (a leaf on
    /// its class) and a failed one does not stop the others.
    pub(crate) async fn execute(
        &mut self,
        requests: Vec<Request>,
    ) -> Vec<Result<(), RequestError>> {
        let mut results = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let batch: Vec<Request> = requests
                .by_ref()
                .take(BATCH_MESSAGES)
                .map(|mut request| {
                    request.header.flags |= NLM_F_REQUEST | NLM_F_ACK;
                    request
                })
                .collect();
            let count = batch.len();
            self.changes_sent += count as u64;
            results.extend(self.execute_batch(batch, count).await);
        }
        results
    }

    async fn execute_batch(
        &self,
        batch: Vec<Request>,
        count: usize,
    ) -> Vec<Result<(), RequestError>> {
        let Ok(mut replies) = self.handle.request_batch(batch, SocketAddr::new(0, 0)) else {
            return (0..count).map(|_| Err(RequestError::Closed)).collect();
        };
        let mut acks = Vec::with_capacity(count);
        let collected = tokio::time::timeout(REPLY_TIMEOUT, async {
            while let Some(reply) = replies.next().await {
                if let NetlinkPayload::Error(error) = &reply.payload {
                    let result = match error.code {
                        None => Ok(()),
                        Some(code) => Err(RequestError::Kernel {
                            errno: code.get().saturating_abs(),
                            reason: extack_reason(reply.header.flags, &error.header),
                        }),
                    };
                    acks.push((reply.header.sequence_number, result));
                }
            }
        })
        .await;
        if collected.is_err() || acks.len() != count {
            // Which request an ACK belongs to is only certain when all arrived.
            let error = || {
                if collected.is_err() {
                    RequestError::Timeout(REPLY_TIMEOUT)
                } else {
                    RequestError::Closed
                }
            };
            return (0..count).map(|_| Err(error())).collect();
        }
        // The connection numbers a batch's requests consecutively; ACKs carry the number.
        acks.sort_by_key(|(sequence, _)| *sequence);
        acks.into_iter().map(|(_, result)| result).collect()
    }

    /// One request whose answer is one message (a `GET` of a single object).
    async fn get(&self, message: RouteNetlinkMessage) -> Result<RouteNetlinkMessage, RequestError> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST;
        let mut replies = self
            .handle
            .request(request, SocketAddr::new(0, 0))
            .map_err(|_| RequestError::Closed)?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, replies.next())
            .await
            .map_err(|_| RequestError::Timeout(REPLY_TIMEOUT))?
            .ok_or(RequestError::Closed)?;
        match reply.payload {
            NetlinkPayload::InnerMessage(inner) => Ok(inner),
            NetlinkPayload::Error(error) if error.code.is_some() => Err(RequestError::Kernel {
                errno: error.raw_code().saturating_abs(),
                reason: extack_reason(reply.header.flags, &error.header),
            }),
            _ => Err(RequestError::Unexpected {
                expected: "the object asked for",
            }),
        }
    }

    /// A dump: every message until the kernel says done.
    async fn dump(
        &self,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, RequestError> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut replies = self
            .handle
            .request(request, SocketAddr::new(0, 0))
            .map_err(|_| RequestError::Closed)?;
        let mut messages = Vec::new();
        tokio::time::timeout(REPLY_TIMEOUT, async {
            while let Some(reply) = replies.next().await {
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => messages.push(inner),
                    NetlinkPayload::Error(error) if error.code.is_some() => {
                        return Err(RequestError::Kernel {
                            errno: error.raw_code().saturating_abs(),
                            reason: extack_reason(reply.header.flags, &error.header),
                        });
                    }
                    _ => {}
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| RequestError::Timeout(REPLY_TIMEOUT))??;
        Ok(messages)
    }

    /// The link named `name`, or `None` if there is none.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<Link>, RequestError> {
        let request = RouteNetlinkMessage::GetLink(LinkUnspec::new_with_name(name).build());
        match self.get(request).await {
            Ok(RouteNetlinkMessage::NewLink(message)) => Ok(Some(Link::from_message(&message))),
            Ok(_) => Err(RequestError::Unexpected { expected: "a link" }),
            Err(error) if error.errno() == Some(libc::ENODEV) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every qdisc of the namespace (the kernel does not filter a qdisc dump by device).
    pub(crate) async fn qdiscs(&self) -> Result<Vec<Qdisc>, RequestError> {
        let request = RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default());
        Ok(self
            .dump(request)
            .await?
            .iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewQueueDiscipline(tc) => Some(Qdisc::from_message(tc)),
                _ => None,
            })
            .collect())
    }

    /// The classes of qdisc `major:` on `ifindex`.
    pub(crate) async fn classes(
        &self,
        ifindex: u32,
        major: u16,
    ) -> Result<Vec<Class>, RequestError> {
        let mut message = TcMessage::with_index(ifindex_i32(ifindex));
        message.header.parent = TcHandle { major, minor: 0 };
        let request = RouteNetlinkMessage::GetTrafficClass(message);
        Ok(self
            .dump(request)
            .await?
            .iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewTrafficClass(tc) => Class::from_message(tc),
                _ => None,
            })
            .collect())
    }
}

/// The reason text of an extended ACK: after the echoed request header come attributes, when
/// the kernel flagged them.
fn extack_reason(reply_flags: u16, payload: &[u8]) -> Option<String> {
    if reply_flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    NlasIterator::new(payload.get(NLMSG_HEADER_LEN..)?)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            String::from_utf8_lossy(nla.value())
                .trim_end_matches('\0')
                .to_owned()
        })
}

/// The kernel's `tcm_ifindex` is an `int`; interface indexes are positive `int`s.
fn ifindex_i32(ifindex: u32) -> i32 {
    i32::try_from(ifindex).unwrap_or(i32::MAX)
}

#[must_use]
pub(crate) fn classid(major: u16, minor: u16) -> u32 {
    u32::from(major) << 16 | u32::from(minor)
}

fn tc_message(ifindex: u32, parent: u32, handle: u32, kind: &str) -> TcMessage {
    let mut message = TcMessage::with_index(ifindex_i32(ifindex));
    message.header.parent = TcHandle::from(parent);
    message.header.handle = TcHandle::from(handle);
    message.attributes.push(TcAttribute::Kind(kind.to_owned()));
    message
}

/// The clsact qdisc's ingress hook: `tc filter ... ingress` (`TC_H_MAKE(TC_H_CLSACT,
/// TC_H_MIN_INGRESS)`).
const CLSACT_INGRESS: u32 = 0xffff_fff2;
/// `ETH_P_ALL`, in network order as a filter's protocol is given.
const ETH_P_ALL_BE: u16 = 0x0003_u16.to_be();
/// `TCA_BPF_ACT`: a classic bpf filter's actions.
const TCA_BPF_ACT: u16 = 1;
/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 0x8000;
/// The upload filter's priority: after any the kernel numbers itself (from 49152 down), so it
/// runs after `lan_ingress` whatever order they were added in.
pub(crate) const UPLOAD_FILTER_PREF: u16 = 0xfff0;
/// Its handle among the bpf filters at that priority.
const UPLOAD_FILTER_HANDLE: u32 = 1;

/// `tc filter replace dev LAN ingress pref 65520 handle 1 protocol all bpf fd FD name NAME
/// action mirred egress redirect dev IFB` — classic mode (not direct-action), so the program
/// only says match (-1) or not (0) and the filter's action does the redirect, which marks the
/// packet redirected as an IFB before Linux 6.6 requires (see `hotspotd_common::IFB_BY_FILTER`).
pub(crate) fn upsert_upload_filter(
    lan_ifindex: u32,
    program_fd: u32,
    program_name: &str,
    ifb_ifindex: u32,
) -> Request {
    use rtnetlink::packet_core::Emitable as _;
    use rtnetlink::packet_route::tc::{
        TcAction, TcActionAttribute, TcActionGeneric, TcActionMirror, TcActionMirrorOption,
        TcActionOption, TcActionType, TcBpfFlags, TcFilterBpfOption, TcMirror, TcMirrorActionType,
    };
    let mut mirror = TcMirror::default();
    mirror.generic = TcActionGeneric::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = ifb_ifindex;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind(TcActionMirror::KIND.to_owned()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    let actions = [action];
    let mut encoded = vec![0; actions.as_slice().buffer_len()];
    actions.as_slice().emit(&mut encoded);
    let mut message = tc_message(lan_ifindex, CLSACT_INGRESS, UPLOAD_FILTER_HANDLE, "bpf");
    message.header.info = u32::from(UPLOAD_FILTER_PREF) << 16 | u32::from(ETH_P_ALL_BE);
    message.attributes.push(TcAttribute::Options(vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(program_fd)),
        TcOption::Bpf(TcFilterBpfOption::ProgName(program_name.to_owned())),
        // No TCA_BPF_FLAG_ACT_DIRECT: the action below decides.
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::empty())),
        TcOption::Other(DefaultNla::new(TCA_BPF_ACT | NLA_F_NESTED, encoded)),
    ]));
    with_flags(RouteNetlinkMessage::NewTrafficFilter(message), UPSERT)
}

/// Create-or-replace flags: `tc ... replace`. With them every request is idempotent, which
/// is what lets an interrupted apply simply be retried.
const UPSERT: u16 = NLM_F_CREATE | NLM_F_REPLACE;

/// `tc qdisc replace dev IF root handle MAJOR: htb default fffe r2q 10`.
pub(crate) fn replace_root(ifindex: u32, major: u16, default_minor: u16) -> Request {
    let mut message = tc_message(ifindex, u32::from(TcHandle::ROOT), classid(major, 0), "htb");
    message
        .attributes
        .push(TcAttribute::Options(vec![TcOption::Other(
            DefaultNla::new(TCA_HTB_INIT, htb::encode_glob(default_minor).to_vec()),
        )]));
    with_flags(RouteNetlinkMessage::NewQueueDiscipline(message), UPSERT)
}

/// `tc qdisc del dev IF root handle MAJOR:` — the kernel refuses (EINVAL) when the root has
/// another handle, so this never deletes somebody else's tree.
pub(crate) fn delete_root(ifindex: u32, major: u16) -> Request {
    let mut message = TcMessage::with_index(ifindex_i32(ifindex));
    message.header.parent = TcHandle::ROOT;
    message.header.handle = TcHandle::from(classid(major, 0));
    with_flags(RouteNetlinkMessage::DelQueueDiscipline(message), 0)
}

/// `tc class replace dev IF parent PARENT classid CLASSID htb rate .. ceil .. burst ..
/// cburst .. quantum .. prio ..`, without the rate tables (see `htb::TC_LINKLAYER_ETHERNET`).
pub(crate) fn upsert_class(ifindex: u32, parent: u32, class: u32, opt: &HtbOpt) -> Request {
    let mut message = tc_message(ifindex, parent, class, "htb");
    let mut options: Vec<TcOption> = opt
        .rate64_attributes()
        .into_iter()
        .map(|(kind, value)| TcOption::Other(DefaultNla::new(kind, value.to_vec())))
        .collect();
    options.push(TcOption::Other(DefaultNla::new(
        TCA_HTB_PARMS,
        opt.encode().to_vec(),
    )));
    message.attributes.push(TcAttribute::Options(options));
    with_flags(RouteNetlinkMessage::NewTrafficClass(message), UPSERT)
}

/// `tc class del dev IF classid CLASSID` (its leaf qdisc goes with it).
pub(crate) fn delete_class(ifindex: u32, class: u32) -> Request {
    let mut message = TcMessage::with_index(ifindex_i32(ifindex));
    message.header.handle = TcHandle::from(class);
    with_flags(RouteNetlinkMessage::DelTrafficClass(message), 0)
}

/// `tc qdisc replace dev IF parent CLASSID pfifo limit N` or `tc qdisc add ... fq_codel`.
/// Handle 0 lets the kernel number the leaf. A pfifo is created or replaced (create +
/// replace changes a pfifo in place, keeping its queue, and grafts a new one over the
/// kernel's default leaf or another kind). An `fq_codel` is created exclusively instead:
/// `fq_codel_change` refuses `TCA_FQ_CODEL_FLOWS` on an existing instance (EINVAL), so
/// changing one in place needs [`change_fq_codel`]; asked to create one where an `fq_codel`
/// already is, the kernel answers EEXIST ("Exclusivity flag on, cannot modify"), which is
/// the cue for that change. (Older kernels, whose `tc_modify_qdisc` grafts whenever create,
/// replace and exclusive are all set, put in a fresh leaf instead, which is also correct.)
pub(crate) fn upsert_leaf(ifindex: u32, class: u32, spec: &LeafSpec) -> Request {
    match *spec {
        LeafSpec::Pfifo { limit_packets } => {
            let mut message = tc_message(ifindex, class, 0, "pfifo");
            // `struct tc_fifo_qopt { __u32 limit; }` directly in TCA_OPTIONS, not nested.
            message.attributes.push(TcAttribute::Other(DefaultNla::new(
                TCA_OPTIONS,
                limit_packets.to_ne_bytes().to_vec(),
            )));
            with_flags(RouteNetlinkMessage::NewQueueDiscipline(message), UPSERT)
        }
        LeafSpec::FqCodel {
            limit_packets,
            flows,
            memory_limit_bytes,
        } => {
            let mut message = tc_message(ifindex, class, 0, "fq_codel");
            message.attributes.push(TcAttribute::Options(vec![
                TcOption::FqCodel(TcQdiscFqCodelOption::Limit(limit_packets)),
                TcOption::FqCodel(TcQdiscFqCodelOption::Flows(flows)),
                TcOption::FqCodel(TcQdiscFqCodelOption::MemoryLimit(memory_limit_bytes)),
            ]));
            with_flags(
                RouteNetlinkMessage::NewQueueDiscipline(message),
                UPSERT | NLM_F_EXCL,
            )
        }
    }
}

/// `tc qdisc change dev IF parent CLASSID fq_codel limit N memory_limit M`: what can change
/// on an existing `fq_codel` leaf (everything but its flow count). `None` for other kinds.
pub(crate) fn change_fq_codel(ifindex: u32, class: u32, spec: &LeafSpec) -> Option<Request> {
    let LeafSpec::FqCodel {
        limit_packets,
        memory_limit_bytes,
        ..
    } = *spec
    else {
        return None;
    };
    let mut message = tc_message(ifindex, class, 0, "fq_codel");
    message.attributes.push(TcAttribute::Options(vec![
        TcOption::FqCodel(TcQdiscFqCodelOption::Limit(limit_packets)),
        TcOption::FqCodel(TcQdiscFqCodelOption::MemoryLimit(memory_limit_bytes)),
    ]));
    Some(with_flags(
        RouteNetlinkMessage::NewQueueDiscipline(message),
        0,
    ))
}

/// `ip link add NAME type ifb`.
pub(crate) fn add_ifb(name: &str) -> Request {
    with_flags(
        RouteNetlinkMessage::NewLink(LinkIfb::new(name).build()),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// `ip link set dev IF up [alias ALIAS]`.
pub(crate) fn set_link_up(ifindex: u32, alias: Option<&str>) -> Request {
    let mut builder = LinkUnspec::new_with_index(ifindex).up();
    if let Some(alias) = alias {
        builder = builder.alias(alias);
    }
    with_flags(RouteNetlinkMessage::SetLink(builder.build()), 0)
}

/// `ip link del dev IF`.
pub(crate) fn delete_link(ifindex: u32) -> Request {
    with_flags(
        RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(ifindex).build()),
        0,
    )
}

/// A change request: the message and the flags that say how to apply it (create, replace,
/// exclusive), which travel in the netlink header. [`Connection::execute`] adds
/// `NLM_F_REQUEST | NLM_F_ACK`.
pub(crate) type Request = NetlinkMessage<RouteNetlinkMessage>;

fn with_flags(message: RouteNetlinkMessage, flags: u16) -> Request {
    let mut request = NetlinkMessage::from(message);
    request.header.flags = flags;
    request
}

/// What we read back about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) ifindex: u32,
    /// `IFLA_INFO_KIND`: `Some("ifb")` for an IFB, `None` for physical devices.
    pub(crate) kind: Option<String>,
    pub(crate) alias: Option<String>,
    pub(crate) up: bool,
}

impl Link {
    fn from_message(message: &LinkMessage) -> Link {
        let mut link = Link {
            ifindex: message.header.index,
            kind: None,
            alias: None,
            up: message
                .header
                .flags
                .contains(rtnetlink::packet_route::link::LinkFlags::Up),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(match kind {
                                InfoKind::Ifb => "ifb".to_owned(),
                                other => other.to_string(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// What we read back about a qdisc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Qdisc {
    pub(crate) ifindex: u32,
    pub(crate) handle: u32,
    pub(crate) parent: u32,
    pub(crate) kind: String,
    /// For an HTB root: its default class minor.
    pub(crate) htb_default: Option<u32>,
    /// For a pfifo or `fq_codel` leaf: its options as we would have sent them.
    pub(crate) leaf: Option<LeafSpec>,
}

impl Qdisc {
    fn from_message(message: &TcMessage) -> Qdisc {
        let mut qdisc = Qdisc {
            ifindex: u32::try_from(message.header.index).unwrap_or(0),
            handle: message.header.handle.into(),
            parent: message.header.parent.into(),
            kind: String::new(),
            htb_default: None,
            leaf: None,
        };
        let mut fq_codel = (None, None, None);
        for attribute in &message.attributes {
            match attribute {
                TcAttribute::Kind(kind) => qdisc.kind.clone_from(kind),
                TcAttribute::Options(options) => {
                    for option in options {
                        match option {
                            TcOption::FqCodel(TcQdiscFqCodelOption::Limit(limit)) => {
                                fq_codel.0 = Some(*limit);
                            }
                            TcOption::FqCodel(TcQdiscFqCodelOption::Flows(flows)) => {
                                fq_codel.1 = Some(*flows);
                            }
                            TcOption::FqCodel(TcQdiscFqCodelOption::MemoryLimit(bytes)) => {
                                fq_codel.2 = Some(*bytes);
                            }
                            // Kinds netlink-packet-route does not know keep TCA_OPTIONS raw.
                            TcOption::Other(raw) => {
                                let value = nla_value(raw);
                                match qdisc.kind.as_str() {
                                    "htb" => {
                                        qdisc.htb_default = nested(&value)
                                            .get(&TCA_HTB_INIT)
                                            .and_then(|glob| htb::decode_glob_default(glob));
                                    }
                                    "pfifo" => {
                                        qdisc.leaf = value
                                            .get(..4)
                                            .and_then(|limit| limit.try_into().ok())
                                            .map(|limit| LeafSpec::Pfifo {
                                                limit_packets: u32::from_ne_bytes(limit),
                                            });
                                    }
                                    _ => {}
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if let (Some(limit_packets), Some(flows), Some(memory_limit_bytes)) = fq_codel {
            qdisc.leaf = Some(LeafSpec::FqCodel {
                limit_packets,
                flows,
                memory_limit_bytes,
            });
        }
        qdisc
    }
}

/// What we read back about an HTB class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) classid: u32,
    pub(crate) parent: u32,
    pub(crate) level: u32,
    pub(crate) opt: HtbOpt,
}

impl Class {
    fn from_message(message: &TcMessage) -> Option<Class> {
        let mut is_htb = false;
        let mut nested_options = BTreeMap::new();
        for attribute in &message.attributes {
            match attribute {
                TcAttribute::Kind(kind) => is_htb = kind == "htb",
                TcAttribute::Options(options) => {
                    for option in options {
                        if let TcOption::Other(raw) = option {
                            nested_options = nested(&nla_value(raw));
                        }
                    }
                }
                _ => {}
            }
        }
        if !is_htb {
            return None;
        }
        let u64_of = |kind| {
            nested_options
                .get(&kind)
                .and_then(|value: &Vec<u8>| value.get(..8)?.try_into().ok())
                .map(u64::from_ne_bytes)
        };
        let (opt, level) = HtbOpt::decode(
            nested_options.get(&TCA_HTB_PARMS)?,
            u64_of(TCA_HTB_RATE64),
            u64_of(TCA_HTB_CEIL64),
        )?;
        Some(Class {
            classid: message.header.handle.into(),
            parent: message.header.parent.into(),
            level,
            opt,
        })
    }
}

/// The value bytes of a raw attribute (`DefaultNla` keeps them private; emitting is the way
/// out).
fn nla_value(nla: &DefaultNla) -> Vec<u8> {
    use rtnetlink::packet_core::Nla as _;
    let mut value = vec![0; nla.value_len()];
    nla.emit_value(&mut value);
    value
}

/// Nested attributes by type (the last one wins, as in the kernel's `nla_parse`).
fn nested(payload: &[u8]) -> BTreeMap<u16, Vec<u8>> {
    NlasIterator::new(payload)
        .filter_map(Result::ok)
        .map(|nla| (nla.kind() & !NLA_TYPE_FLAGS, nla.value().to_vec()))
        .collect()
}

/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER`, which are not part of an attribute's type.
const NLA_TYPE_FLAGS: u16 = 0xc000;

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::{Emitable as _, Parseable as _};

    use super::*;

    #[test]
    fn the_kernels_reason_is_read_from_an_extended_ack() {
        // The echoed request header, then NLMSGERR_ATTR_MSG with a NUL-terminated string.
        let reason = b"Specified qdisc kind is unknown\0";
        let mut payload = vec![0u8; NLMSG_HEADER_LEN];
        let length = u16::try_from(4 + reason.len()).unwrap();
        payload.extend_from_slice(&length.to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(reason);
        payload.resize(payload.len().next_multiple_of(4), 0);
        assert_eq!(
            extack_reason(NLM_F_ACK_TLVS, &payload).as_deref(),
            Some("Specified qdisc kind is unknown")
        );
        assert_eq!(
            extack_reason(0, &payload),
            None,
            "not flagged: no attributes"
        );
        assert_eq!(extack_reason(NLM_F_ACK_TLVS, &payload[..8]), None);
        let error = RequestError::Kernel {
            errno: libc::ENOENT,
            reason: Some("Specified qdisc kind is unknown".to_owned()),
        };
        assert_eq!(
            error.to_string(),
            "No such file or directory (os error 2): Specified qdisc kind is unknown"
        );
    }

    #[test]
    fn class_options_are_nested_htb_attributes() {
        let opt = HtbOpt::new(
            htb::client_class(5000, 100_000),
            htb::PschedClock::KERNEL_DEFAULT,
        );
        let request = upsert_class(7, classid(1, 1), classid(1, 0x10), &opt);
        assert_eq!(request.header.flags, NLM_F_CREATE | NLM_F_REPLACE);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficClass(message)) =
            &request.payload
        else {
            panic!("not a class: {request:?}");
        };
        // Through the wire format, as the kernel would dump it back.
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        let parsed = TcMessage::parse(&bytes).expect("valid tc message");
        let class = Class::from_message(&parsed).expect("parses back");
        assert_eq!(class.opt, opt);
        assert_eq!(class.classid, 0x10010);
        assert_eq!(class.parent, 0x10001);
    }
}
