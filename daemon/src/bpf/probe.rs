//! Checks, before the programs load, that the kernel has every eBPF feature they use, so that an
//! old kernel is refused with one sentence naming what it lacks and the kernel that has it,
//! instead of a verifier log. Each feature is probed, not inferred from the version (distribution
//! kernels backport features): a tiny map is created or a tiny program is loaded into the
//! kernel and closed at once. Side effects: none that outlive the probe, except on kernels
//! before 5.11, where `RLIMIT_MEMLOCK` is lifted if it keeps the ring buffer probe from
//! creating its map.
//!
//! The features are the ones `ebpf/src` compiles to (checked against the object's helper calls
//! and instructions, README's "Kernel" section lists them); TCX and batch map reads are not
//! among them because hotspotd falls back (clsact, entry-by-entry reads) where they are missing.

use std::{
    fmt, io,
    os::fd::{FromRawFd as _, OwnedFd},
};

/// The oldest kernel with every [`Feature`] (x86-64): the newest of their `since`.
pub const MINIMUM_KERNEL: (u32, u32) = (5, 12);

/// An eBPF feature hotspotd's programs cannot do without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// `bpf_jiffies64` (helper 118): the session clock.
    Jiffies,
    /// `bpf_map_lookup_elem` on a `SOCKMAP` from a tc program, and `bpf_sk_assign` (helper 124)
    /// with the socket found: how unpaid web requests reach the portal.
    SocketAssign,
    /// `BPF_MAP_TYPE_RINGBUF` and `bpf_ringbuf_output` (helper 130): events and DNS answers.
    RingBuffer,
    /// Tail calls from a program that also calls BPF functions (x86-64 JIT; arm64 from 6.0).
    TailCallsWithCalls,
    /// `BPF_ATOMIC` with `BPF_FETCH` (`atomic_fetch_add`, `atomic_fetch_or`): the counters and
    /// the grant's flags.
    AtomicFetch,
}

impl Feature {
    /// Every feature, oldest first.
    pub const ALL: [Self; 5] = [
        Self::Jiffies,
        Self::SocketAssign,
        Self::RingBuffer,
        Self::TailCallsWithCalls,
        Self::AtomicFetch,
    ];

    /// The mainline kernel (major, minor) that brought it.
    #[must_use]
    pub const fn since(self) -> (u32, u32) {
        match self {
            Self::Jiffies => (5, 5),
            Self::SocketAssign => (5, 7),
            Self::RingBuffer => (5, 8),
            Self::TailCallsWithCalls => (5, 10),
            Self::AtomicFetch => (5, 12),
        }
    }

    /// What it is called in the refusal.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Jiffies => "the bpf_jiffies64 helper",
            Self::SocketAssign => "bpf_sk_assign with a socket map lookup",
            Self::RingBuffer => "the BPF ring buffer",
            Self::TailCallsWithCalls => "tail calls from programs with BPF-to-BPF calls",
            Self::AtomicFetch => "BPF atomic fetch operations",
        }
    }
}

/// The refusal: the kernel lacks `missing` (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Missing {
    /// The running kernel's release (`uname -r`).
    pub release: String,
    pub missing: Vec<Feature>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = MINIMUM_KERNEL;
        let names: Vec<String> = self
            .missing
            .iter()
            .map(|feature| {
                let (since_major, since_minor) = feature.since();
                format!("{} (Linux {since_major}.{since_minor})", feature.name())
            })
            .collect();
        write!(
            f,
            "this kernel (Linux {}) lacks {}: hotspotd needs Linux {major}.{minor} or newer",
            self.release,
            join(&names)
        )
    }
}

/// "a", "a and b", "a, b and c".
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The decision: `Err` naming every feature `present` says the kernel lacks.
pub fn decide(release: &str, present: impl Fn(Feature) -> bool) -> Result<(), Missing> {
    let missing: Vec<Feature> = Feature::ALL
        .into_iter()
        .filter(|&feature| !present(feature))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Missing {
            release: release.to_owned(),
            missing,
        })
    }
}

/// Probes the running kernel. A probe that cannot even be tried (no permission, no memory)
/// counts the feature as present: the real load then says what is wrong.
pub fn require() -> Result<(), Missing> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned());
    decide(&release, |feature| probe(feature) != Probe::Lacks)
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Has,
    Lacks,
    /// The probe failed for another reason (permissions, memory).
    Unknown,
}

/// Probes one feature.
#[must_use]
pub fn probe(feature: Feature) -> Probe {
    match feature {
        Feature::Jiffies => helper(HELPER_JIFFIES64),
        Feature::RingBuffer => {
            match create_map(MAP_TYPE_RINGBUF, 0, 0, RINGBUF_BYTES).or_else(|error| {
                // Kernels before 5.11 charge maps to RLIMIT_MEMLOCK (often 8 MiB or less):
                // lifted the way libbpf does, so that the limit does not pass for a kernel
                // without ring buffers.
                if error.raw_os_error() == Some(libc::EPERM) && lift_memlock() {
                    create_map(MAP_TYPE_RINGBUF, 0, 0, RINGBUF_BYTES)
                } else {
                    Err(error)
                }
            }) {
                Ok(_) => Probe::Has,
                // Unknown map types are EINVAL.
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Probe::Lacks,
                Err(_) => Probe::Unknown,
            }
        }
        Feature::AtomicFetch => atomic_fetch(),
        Feature::SocketAssign => socket_assign(),
        Feature::TailCallsWithCalls => tail_calls_with_calls(),
    }
}

// uapi linux/bpf.h
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const MAP_TYPE_PROG_ARRAY: u32 = 3;
const MAP_TYPE_SOCKMAP: u32 = 15;
const MAP_TYPE_RINGBUF: u32 = 27;
const PROG_TYPE_SCHED_CLS: u32 = 3;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_TAIL_CALL: i32 = 12;
const HELPER_SK_RELEASE: i32 = 86;
const HELPER_JIFFIES64: i32 = 118;
const HELPER_SK_ASSIGN: i32 = 124;
/// A ring buffer's size must be a power-of-two number of pages.
const RINGBUF_BYTES: u32 = 1 << 16;
/// Room for the verifier's log of a probe program (a few lines).
const LOG_BYTES: usize = 64 * 1024;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes (uapi linux/bpf.h, bpf_common.h).
const MOV64_IMM: u8 = 0xb7;
const MOV64_REG: u8 = 0xbf;
const ADD64_IMM: u8 = 0x07;
const ST_MEM_DW: u8 = 0x7a;
const ST_MEM_W: u8 = 0x62;
/// `BPF_STX | BPF_ATOMIC | BPF_DW`.
const ATOMIC_DW: u8 = 0xdb;
const BPF_ADD: i32 = 0x00;
const BPF_OR: i32 = 0x40;
const BPF_FETCH: i32 = 0x01;
const LD_IMM64: u8 = 0x18;
/// `src_reg` of `LD_IMM64` when `imm` is a map's file descriptor.
const PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of a call to a BPF function (not a helper); `imm` is the relative target.
const PSEUDO_CALL: u8 = 1;
const JEQ_IMM: u8 = 0x15;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R6: u8 = 6;
const R7: u8 = 7;
const R10: u8 = 10;

const fn ld_map_fd(dst: u8, fd: i32) -> [Insn; 2] {
    [
        insn(LD_IMM64, dst, PSEUDO_MAP_FD, 0, fd),
        insn(0, 0, 0, 0, 0),
    ]
}

const RETURN_0: [Insn; 2] = [insn(MOV64_IMM, R0, 0, 0, 0), insn(EXIT, 0, 0, 0, 0)];

/// `atomic_fetch_add` and `atomic_fetch_or` on a stack slot.
fn atomic_fetch() -> Probe {
    let program = [
        insn(ST_MEM_DW, R10, 0, -8, 0),
        insn(MOV64_IMM, R1, 0, 0, 1),
        insn(ATOMIC_DW, R10, R1, -8, BPF_ADD | BPF_FETCH),
        insn(ATOMIC_DW, R10, R1, -8, BPF_OR | BPF_FETCH),
        RETURN_0[0],
        RETURN_0[1],
    ];
    // Older verifiers reject the instruction itself ("BPF_STX uses reserved fields",
    // "unknown opcode", or an atomic they only know as XADD without BPF_FETCH).
    loads(&program)
}

/// A SOCKMAP lookup handed to `bpf_sk_assign` and released, the way the steering program
/// does it.
fn socket_assign() -> Probe {
    let Ok(map) = create_map(MAP_TYPE_SOCKMAP, 4, 8, 1) else {
        return Probe::Unknown;
    };
    let sockets = ld_map_fd(R1, raw(&map));
    let program = [
        insn(MOV64_REG, R6, R1, 0, 0),
        insn(ST_MEM_W, R10, 0, -4, 0),
        sockets[0],
        sockets[1],
        insn(MOV64_REG, R2, R10, 0, 0),
        insn(ADD64_IMM, R2, 0, 0, -4),
        insn(CALL, 0, 0, 0, HELPER_MAP_LOOKUP_ELEM),
        // no socket: to the return at index 15
        insn(JEQ_IMM, R0, 0, 7, 0),
        insn(MOV64_REG, R7, R0, 0, 0),
        insn(MOV64_REG, R1, R6, 0, 0),
        insn(MOV64_REG, R2, R7, 0, 0),
        insn(MOV64_IMM, R3, 0, 0, 0),
        insn(CALL, 0, 0, 0, HELPER_SK_ASSIGN),
        insn(MOV64_REG, R1, R7, 0, 0),
        insn(CALL, 0, 0, 0, HELPER_SK_RELEASE),
        RETURN_0[0],
        RETURN_0[1],
    ];
    loads(&program)
}

/// A program that calls a BPF function and makes a tail call.
fn tail_calls_with_calls() -> Probe {
    let Ok(map) = create_map(MAP_TYPE_PROG_ARRAY, 4, 4, 1) else {
        return Probe::Unknown;
    };
    let programs = ld_map_fd(R2, raw(&map));
    let program = [
        insn(MOV64_REG, R6, R1, 0, 0),
        // to the function at index 9: relative to the next instruction
        insn(CALL, 0, PSEUDO_CALL, 0, 7),
        insn(MOV64_REG, R1, R6, 0, 0),
        programs[0],
        programs[1],
        insn(MOV64_IMM, R3, 0, 0, 0),
        insn(CALL, 0, 0, 0, HELPER_TAIL_CALL),
        RETURN_0[0],
        RETURN_0[1],
        // the function
        RETURN_0[0],
        RETURN_0[1],
    ];
    loads(&program)
}

/// Whether the kernel knows helper `id` in tc programs: a call with arguments the verifier
/// may well refuse, told apart by its log (the way bpftool's feature probe does it).
fn helper(id: i32) -> Probe {
    let program = [insn(CALL, 0, 0, 0, id), RETURN_0[0], RETURN_0[1]];
    match load(&program) {
        Err(Load::Rejected(log))
            if log.contains("invalid func") || log.contains("unknown func") =>
        {
            Probe::Lacks
        }
        // Refused for its arguments: the helper exists.
        Ok(()) | Err(Load::Rejected(_)) => Probe::Has,
        Err(Load::Other) => Probe::Unknown,
    }
}

/// Sets `RLIMIT_MEMLOCK` to unlimited; whether it could. A side effect on the whole process,
/// wanted anyway on a kernel that charges maps to it.
fn lift_memlock() -> bool {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct it is given and nothing else.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) == 0 }
}

fn raw(map: &OwnedFd) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(map)
}

/// The start of `union bpf_attr` for `BPF_MAP_CREATE`; the kernel treats the rest as zero.
#[repr(C)]
#[derive(Default)]
struct MapAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> io::Result<OwnedFd> {
    let attr = MapAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for BPF_MAP_CREATE, holding no pointers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &raw const attr,
            size_of::<MapAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("a file descriptor above i32"))?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The start of `union bpf_attr` for `BPF_PROG_LOAD`, up to the log buffer.
#[repr(C)]
#[derive(Default)]
struct ProgAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
}

/// Why a probe program did not load.
enum Load {
    /// The verifier refused it (`EINVAL` or `EACCES`); its log.
    Rejected(String),
    /// Anything else (no permission, no memory): the probe tells nothing.
    Other,
}

/// Whether the kernel has what `program` uses: it loads (`Has`), the verifier refuses it
/// (`Lacks`), or the load failed for another reason (`Unknown`).
fn loads(program: &[Insn]) -> Probe {
    match load(program) {
        Ok(()) => Probe::Has,
        Err(Load::Rejected(_)) => Probe::Lacks,
        Err(Load::Other) => Probe::Unknown,
    }
}

/// Loads `program` as a tc classifier and closes it at once.
fn load(program: &[Insn]) -> Result<(), Load> {
    let mut log = vec![0u8; LOG_BYTES];
    let license = c"GPL";
    let attr = ProgAttr {
        prog_type: PROG_TYPE_SCHED_CLS,
        insn_cnt: u32::try_from(program.len()).unwrap_or(u32::MAX),
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: u32::try_from(log.len()).unwrap_or(u32::MAX),
        log_buf: log.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for BPF_PROG_LOAD; its pointers are to the
    // live `program` (`insn_cnt` instructions), a NUL-terminated license and `log` of
    // `log_size` bytes, the most the kernel writes there.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &raw const attr,
            size_of::<ProgAttr>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just returned this descriptor and nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) });
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::EACCES) => {
            let end = log.iter().position(|&byte| byte == 0).unwrap_or(log.len());
            Err(Load::Rejected(
                String::from_utf8_lossy(&log[..end]).into_owned(),
            ))
        }
        _ => Err(Load::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_with_everything_passes() {
        assert_eq!(decide("6.1.0-57-amd64", |_| true), Ok(()));
    }

    #[test]
    fn a_kernel_without_atomic_fetch_is_refused_in_one_sentence() {
        let refusal = decide("5.10.0-46-amd64", |feature| feature != Feature::AtomicFetch)
            .expect_err("5.10 lacks atomic fetch operations");
        assert_eq!(
            refusal.to_string(),
            "this kernel (Linux 5.10.0-46-amd64) lacks BPF atomic fetch operations (Linux 5.12): \
             hotspotd needs Linux 5.12 or newer"
        );
    }

    #[test]
    fn every_missing_feature_is_named_oldest_first() {
        let refusal = decide("5.4.0", |feature| feature == Feature::Jiffies).expect_err("5.4");
        assert_eq!(
            refusal.to_string(),
            "this kernel (Linux 5.4.0) lacks bpf_sk_assign with a socket map lookup (Linux 5.7), \
             the BPF ring buffer (Linux 5.8), tail calls from programs with BPF-to-BPF calls \
             (Linux 5.10) and BPF atomic fetch operations (Linux 5.12): hotspotd needs Linux \
             5.12 or newer"
        );
    }

    #[test]
    fn the_minimum_is_the_newest_feature() {
        let newest = Feature::ALL.iter().map(|feature| feature.since()).max();
        assert_eq!(newest, Some(MINIMUM_KERNEL));
    }

    /// The kernel these tests run on (6.18 on the build machine, whatever a CI runner boots):
    /// every probe loads its program, so none counts a feature as missing by mistake.
    #[test]
    fn this_kernel_has_every_feature() {
        for feature in Feature::ALL {
            assert_eq!(probe(feature), Probe::Has, "{feature:?}");
        }
        assert_eq!(require(), Ok(()));
    }
}
