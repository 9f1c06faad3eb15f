//! HTB and leaf parameters as the kernel takes them, computed from kbit/s limits: rates,
//! bursts, quanta, the psched tick conversion, and the byte layout of `struct tc_htb_opt` and
//! `struct tc_htb_glob` (`include/uapi/linux/pkt_sched.h`). Pure: no side effects.

use super::Leaf;

/// `TCA_HTB_*` attributes nested in `TCA_OPTIONS`.
pub(crate) const TCA_HTB_PARMS: u16 = 1;
pub(crate) const TCA_HTB_INIT: u16 = 2;
pub(crate) const TCA_HTB_RATE64: u16 = 6;
pub(crate) const TCA_HTB_CEIL64: u16 = 7;

/// `TC_HTB_PROTOVER`: `htb_init` refuses any other `tc_htb_glob.version`.
const TC_HTB_PROTOVER: u32 = 3;
/// iproute2's default `r2q`. We always pass an explicit quantum, so it only matters for
/// classes someone else adds to our tree.
const RATE2QUANTUM: u32 = 10;
/// `TC_LINKLAYER_ETHERNET`. With a link layer set, `htb_change_class` neither needs nor reads
/// the 1 KiB rate tables (`TCA_HTB_RTAB`/`CTAB`): it only parses them "to keep backward
/// compatible with `rate_table` based iproute2 tc" when the link layer is `UNAWARE`. The rate
/// itself is precomputed in `psched_ratecfg_precompute` from `rate` (or `RATE64`).
const TC_LINKLAYER_ETHERNET: u8 = 1;

/// Bytes of `struct tc_htb_opt`: two 12-byte `tc_ratespec`s and five `u32`s.
pub(crate) const HTB_OPT_LEN: usize = 44;
/// Bytes of `struct tc_htb_glob`: five `u32`s.
pub(crate) const HTB_GLOB_LEN: usize = 20;

/// The largest frame HTB sees on an Ethernet LAN (1500 MTU + 14 header); the unit of the
/// floors below. GSO super-packets are larger, but HTB charges them whole either way.
const FRAME_BYTES: u64 = 1514;

/// The smallest rate handed to the kernel, 1 kB/s. HTB refuses 0; a floor also keeps the
/// burst of a tiny guarantee within the `u32` tick range (15 kB at 1 kB/s = 15 s = 2.3e8
/// ticks of 64 ns).
pub(crate) const MIN_RATE_KBIT: u64 = 8;

/// The default class (the box's own traffic and unclassified clients) is guaranteed 1/20 of
/// the global rate and may borrow up to all of it.
const DEFAULT_SHARE_DIVISOR: u64 = 20;
/// Each client is guaranteed 1/1000 of what the default class leaves (95% of the global rate)
/// and may borrow up to its own limit. HTB serves a class sending within its own rate without
/// asking its ancestors, so client rates summing above the parent's would let clients
/// together exceed the global cap (measured: two 15 Mbit/s classes with `rate == ceil` under
/// a 20 Mbit/s parent send 28.7 Mbit/s). Small guarantees make clients borrow from the parent,
/// which is capped; the sum stays within the parent up to 1,000 busy clients, this box's
/// design size, and beyond that the excess is 9.5 kbit/s per client.
const CLIENT_SHARE_PER_MILLE_OF_95_PERCENT: (u64, u64) = (19, 20_000);

/// How long a class may send at full speed after idling, as a burst. HTB refills tokens
/// continuously and releases packets from an hrtimer, so in theory one frame would do:
/// iproute2's default is `rate / HZ + mtu`, and `/proc/net/psched` reports HZ = 1e9 on
/// high-resolution kernels. In practice dequeues run in softirq and slip by up to a few ms
/// under load; tokens are capped at the burst, so any slip longer than `burst / rate` is
/// bandwidth lost for good and a lone TCP flow stays below its ceiling. 10 ms covers that
/// jitter; above the ceiling it allows 10 ms of line rate after an idle period, invisible in
/// any per-second rate.
const BURST_MS: u64 = 10;
/// The burst floor: ten full frames, one TCP initial window (RFC 6928), so a new flow's first
/// flight is not paced out at low rates.
const MIN_BURST_BYTES: u64 = 10 * FRAME_BYTES;

/// How many ms of the ceiling a class may send per DRR round when classes compete for what
/// the parent lends. Equal time per round means the global rate is shared in proportion to
/// the clients' limits (never above them).
const QUANTUM_MS: u64 = 10;
/// HTB's own clamp for computed quanta (`htb_change_class` warns outside 1000..=200000); at
/// least a full frame so every turn can send one.
const MIN_QUANTUM_BYTES: u64 = FRAME_BYTES;
const MAX_QUANTUM_BYTES: u64 = 200_000;

/// The pfifo leaf (where the kernel has no `fq_codel`) holds about 100 ms of the class's
/// ceiling in full frames: one bandwidth-delay product at a 100 ms RTT, enough for a TCP
/// flow to keep the class busy without seconds of queue.
const PFIFO_QUEUE_MS: u64 = 100;
/// At least 32 packets (a few initial windows, since a packet may be a GSO aggregate or a
/// bare ACK), at most the kernel's default txqueuelen.
const PFIFO_MIN_PACKETS: u64 = 32;
const PFIFO_MAX_PACKETS: u64 = 1000;

/// `fq_codel` leaves: `CoDel` keeps the standing queue near its 5 ms target, so the packet and
/// memory limits are only guards against unresponsive floods; the defaults (10240 packets,
/// 32 MiB) are per leaf, i.e. per client and direction, too much for thousands of leaves.
const FQ_CODEL_LIMIT_PACKETS: u32 = 1024;
const FQ_CODEL_MEMORY_LIMIT_BYTES: u32 = 4 << 20;
/// One device has a few dozen concurrent flows; 128 buckets keep collisions rare and the
/// flow table at ~8 KiB instead of the default 1024 buckets' ~64 KiB per leaf.
const FQ_CODEL_FLOWS: u32 = 128;

#[must_use]
pub(crate) fn kbit_to_bytes_per_s(kbit: u64) -> u64 {
    kbit.saturating_mul(1000 / 8)
}

/// The kernel's packet scheduler clock, from `/proc/net/psched`: how tc converts between
/// times and the "ticks" in which `tc_htb_opt.buffer` is expressed (`PSCHED_TICKS2NS`, 64 ns
/// on every current kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PschedClock {
    /// `NSEC_PER_USEC` as the kernel prints it.
    t2us: u32,
    /// Nanoseconds per tick.
    us2t: u32,
    /// Clock resolution as printed: 1e6 on current kernels; 1e9 on old ones, where tc treats
    /// `t2us` as equal to `us2t`.
    clock_res: u32,
}

impl PschedClock {
    /// What every kernel since 2.6.x prints: 1000 ns/µs, 64 ns per tick, 1e6.
    pub(crate) const KERNEL_DEFAULT: PschedClock = PschedClock {
        t2us: 1000,
        us2t: 64,
        clock_res: 1_000_000,
    };

    /// Parses `/proc/net/psched` the way iproute2's `tc_core_init` does (first three hex
    /// words).
    pub(crate) fn parse(text: &str) -> Option<PschedClock> {
        let mut words = text
            .split_whitespace()
            .map(|word| u32::from_str_radix(word, 16));
        let (t2us, us2t, clock_res) = (
            words.next()?.ok()?,
            words.next()?.ok()?,
            words.next()?.ok()?,
        );
        if us2t == 0 || clock_res == 0 {
            return None;
        }
        // iproute2's compatibility hack: with a nanosecond clock the kernel advertised a
        // multiplier of 1000 that really is 1.
        let t2us = if clock_res == 1_000_000_000 {
            us2t
        } else {
            t2us
        };
        Some(PschedClock {
            t2us,
            us2t,
            clock_res,
        })
    }

    /// iproute2's `tc_calc_xmittime`: the ticks needed to send `size_bytes` at
    /// `rate_bytes_per_s`, rounded up (so the bucket really holds `size_bytes`) and saturated
    /// at `u32::MAX` (the field's width). In exact integers where tc uses doubles:
    /// `1e6 * size / rate` µs, times `t2us / us2t * clock_res / 1e6` ticks per µs.
    pub(crate) fn xmittime_ticks(self, rate_bytes_per_s: u64, size_bytes: u64) -> u32 {
        let numerator = u128::from(size_bytes) * u128::from(self.t2us) * u128::from(self.clock_res);
        let denominator = u128::from(rate_bytes_per_s.max(1)) * u128::from(self.us2t);
        u32::try_from(numerator.div_ceil(denominator)).unwrap_or(u32::MAX)
    }
}

/// What we want of one HTB class, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClassParams {
    pub(crate) rate_bytes_per_s: u64,
    pub(crate) ceil_bytes_per_s: u64,
    pub(crate) burst_bytes: u64,
    pub(crate) cburst_bytes: u64,
    pub(crate) quantum_bytes: u32,
    pub(crate) prio: u32,
}

#[must_use]
pub(crate) fn burst_bytes(rate_bytes_per_s: u64) -> u64 {
    (rate_bytes_per_s.saturating_mul(BURST_MS) / 1000).max(MIN_BURST_BYTES)
}

#[must_use]
pub(crate) fn quantum_bytes(ceil_bytes_per_s: u64) -> u32 {
    let quantum = (ceil_bytes_per_s.saturating_mul(QUANTUM_MS) / 1000)
        .clamp(MIN_QUANTUM_BYTES, MAX_QUANTUM_BYTES);
    u32::try_from(quantum).unwrap_or(u32::MAX)
}

fn class(rate_kbit: u64, ceil_kbit: u64) -> ClassParams {
    let ceil_bytes_per_s = kbit_to_bytes_per_s(ceil_kbit.max(MIN_RATE_KBIT));
    // HTB requires rate <= ceil for the bucket arithmetic to make sense.
    let rate_bytes_per_s = kbit_to_bytes_per_s(rate_kbit.max(MIN_RATE_KBIT)).min(ceil_bytes_per_s);
    ClassParams {
        rate_bytes_per_s,
        ceil_bytes_per_s,
        burst_bytes: burst_bytes(rate_bytes_per_s),
        cburst_bytes: burst_bytes(ceil_bytes_per_s),
        quantum_bytes: quantum_bytes(ceil_bytes_per_s),
        // One priority for everyone: strict priority among borrowers would let one class
        // starve the others.
        prio: 0,
    }
}

/// `X:1`: the global cap, a hard ceiling (`rate == ceil`, nothing to borrow from).
#[must_use]
pub(crate) fn parent_class(global_kbit: u64) -> ClassParams {
    class(global_kbit, global_kbit)
}

/// `X:fffe`: the box's own traffic and clients without a class.
#[must_use]
pub(crate) fn default_class(global_kbit: u64) -> ClassParams {
    class(global_kbit / DEFAULT_SHARE_DIVISOR, global_kbit)
}

/// A client's guaranteed rate: see [`CLIENT_SHARE_PER_MILLE_OF_95_PERCENT`].
#[must_use]
pub(crate) fn client_guarantee_kbit(limit_kbit: u64, global_kbit: u64) -> u64 {
    let (numerator, denominator) = CLIENT_SHARE_PER_MILLE_OF_95_PERCENT;
    (global_kbit.saturating_mul(numerator) / denominator)
        .max(MIN_RATE_KBIT)
        .min(limit_kbit)
}

/// `X:minor`: a client's class, capped at its limit, borrowing from the parent above a small
/// guarantee.
#[must_use]
pub(crate) fn client_class(limit_kbit: u64, global_kbit: u64) -> ClassParams {
    class(client_guarantee_kbit(limit_kbit, global_kbit), limit_kbit)
}

/// `struct tc_htb_opt` as the kernel stores and dumps it, plus the 64-bit rates that travel
/// in `TCA_HTB_RATE64`/`CEIL64` when they do not fit the `u32` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HtbOpt {
    pub(crate) rate_bytes_per_s: u64,
    pub(crate) ceil_bytes_per_s: u64,
    pub(crate) buffer_ticks: u32,
    pub(crate) cbuffer_ticks: u32,
    pub(crate) quantum_bytes: u32,
    pub(crate) prio: u32,
}

impl HtbOpt {
    pub(crate) fn new(params: ClassParams, clock: PschedClock) -> HtbOpt {
        HtbOpt {
            rate_bytes_per_s: params.rate_bytes_per_s,
            ceil_bytes_per_s: params.ceil_bytes_per_s,
            buffer_ticks: clock.xmittime_ticks(params.rate_bytes_per_s, params.burst_bytes),
            cbuffer_ticks: clock.xmittime_ticks(params.ceil_bytes_per_s, params.cburst_bytes),
            quantum_bytes: params.quantum_bytes,
            prio: params.prio,
        }
    }

    /// The `TCA_HTB_PARMS` payload. `level` is output-only (the kernel computes it).
    pub(crate) fn encode(&self) -> [u8; HTB_OPT_LEN] {
        let mut bytes = [0u8; HTB_OPT_LEN];
        bytes[0..12].copy_from_slice(&ratespec(self.rate_bytes_per_s));
        bytes[12..24].copy_from_slice(&ratespec(self.ceil_bytes_per_s));
        bytes[24..28].copy_from_slice(&self.buffer_ticks.to_ne_bytes());
        bytes[28..32].copy_from_slice(&self.cbuffer_ticks.to_ne_bytes());
        bytes[32..36].copy_from_slice(&self.quantum_bytes.to_ne_bytes());
        // 36..40 is `level`, left 0.
        bytes[40..44].copy_from_slice(&self.prio.to_ne_bytes());
        bytes
    }

    /// The 64-bit rate attributes to send with [`HtbOpt::encode`]: only for rates past the
    /// `u32` bytes/s range (34 Gbit/s), like iproute2.
    pub(crate) fn rate64_attributes(&self) -> Vec<(u16, [u8; 8])> {
        let mut attributes = Vec::new();
        if u32::try_from(self.rate_bytes_per_s).is_err() {
            attributes.push((TCA_HTB_RATE64, self.rate_bytes_per_s.to_ne_bytes()));
        }
        if u32::try_from(self.ceil_bytes_per_s).is_err() {
            attributes.push((TCA_HTB_CEIL64, self.ceil_bytes_per_s.to_ne_bytes()));
        }
        attributes
    }

    /// Reads a dumped `TCA_HTB_PARMS` (and the 64-bit rates when the dump had them). Returns
    /// the options and the class level.
    pub(crate) fn decode(
        parms: &[u8],
        rate64: Option<u64>,
        ceil64: Option<u64>,
    ) -> Option<(HtbOpt, u32)> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(parms.get(at..at + 4)?.try_into().ok()?))
        };
        if parms.len() < HTB_OPT_LEN {
            return None;
        }
        let opt = HtbOpt {
            rate_bytes_per_s: rate64.unwrap_or(u64::from(word(8)?)),
            ceil_bytes_per_s: ceil64.unwrap_or(u64::from(word(20)?)),
            buffer_ticks: word(24)?,
            cbuffer_ticks: word(28)?,
            quantum_bytes: word(32)?,
            prio: word(40)?,
        };
        Some((opt, word(36)?))
    }
}

/// `struct tc_ratespec` for a rate: Ethernet link layer, no overhead or minimum packet unit
/// (HTB counts the frame as the LAN sends it, header included). `cell_log`/`cell_align` only
/// index the rate table we do not send.
fn ratespec(rate_bytes_per_s: u64) -> [u8; 12] {
    let mut spec = [0u8; 12];
    spec[1] = TC_LINKLAYER_ETHERNET;
    let rate32 = u32::try_from(rate_bytes_per_s).unwrap_or(u32::MAX);
    spec[8..12].copy_from_slice(&rate32.to_ne_bytes());
    spec
}

/// `struct tc_htb_glob` for our roots: unclassified packets go to `X:fffe`.
pub(crate) fn encode_glob(default_minor: u16) -> [u8; HTB_GLOB_LEN] {
    let mut bytes = [0u8; HTB_GLOB_LEN];
    bytes[0..4].copy_from_slice(&TC_HTB_PROTOVER.to_ne_bytes());
    bytes[4..8].copy_from_slice(&RATE2QUANTUM.to_ne_bytes());
    bytes[8..12].copy_from_slice(&u32::from(default_minor).to_ne_bytes());
    bytes
}

/// The default class minor of a dumped `tc_htb_glob`.
pub(crate) fn decode_glob_default(glob: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(glob.get(8..12)?.try_into().ok()?))
}

/// The qdisc under a class, with its options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeafSpec {
    Pfifo {
        limit_packets: u32,
    },
    FqCodel {
        limit_packets: u32,
        flows: u32,
        memory_limit_bytes: u32,
    },
}

/// The leaf for a class capped at `ceil_kbit`. The kernel's own default leaf is a pfifo
/// sized by the device's txqueuelen, whatever the class's rate: 1000 packets (seconds of
/// queue at a few Mbit/s) on most devices, 0 (a black hole) on some virtual ones. So every
/// class gets an explicit leaf.
#[must_use]
pub(crate) fn leaf_spec(leaf: Leaf, ceil_kbit: u64) -> LeafSpec {
    match leaf {
        Leaf::FqCodel => LeafSpec::FqCodel {
            limit_packets: FQ_CODEL_LIMIT_PACKETS,
            flows: FQ_CODEL_FLOWS,
            memory_limit_bytes: FQ_CODEL_MEMORY_LIMIT_BYTES,
        },
        Leaf::Pfifo => {
            let queue_bytes = kbit_to_bytes_per_s(ceil_kbit).saturating_mul(PFIFO_QUEUE_MS) / 1000;
            let packets = (queue_bytes / FRAME_BYTES).clamp(PFIFO_MIN_PACKETS, PFIFO_MAX_PACKETS);
            LeafSpec::Pfifo {
                limit_packets: u32::try_from(packets).unwrap_or(u32::MAX),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psched_is_parsed_like_tc_does() {
        assert_eq!(
            PschedClock::parse("000003e8 00000040 000f4240 3b9aca00\n"),
            Some(PschedClock::KERNEL_DEFAULT)
        );
        // An old nanosecond-clock kernel: the 1000 multiplier "really is 1".
        assert_eq!(
            PschedClock::parse("000003e8 00000040 3b9aca00 3b9aca00"),
            Some(PschedClock {
                t2us: 64,
                us2t: 64,
                clock_res: 1_000_000_000
            })
        );
        assert_eq!(PschedClock::parse(""), None);
        assert_eq!(PschedClock::parse("000003e8 00000000 000f4240"), None);
        assert_eq!(PschedClock::parse("zz 40 f4240"), None);
    }

    #[test]
    fn xmittime_matches_tc() {
        let clock = PschedClock::KERNEL_DEFAULT;
        // 15140 bytes at 625000 B/s (5 Mbit/s): 24224 µs = 378500 ticks of 64 ns, what
        // `tc class add ... htb rate 5mbit burst 15140` sends (`tc -raw` shows
        // "buffer [0005c684]" on this kernel).
        assert_eq!(clock.xmittime_ticks(625_000, 15_140), 0x5c684);
        // Rounded up, never down: 1 byte at 3 B/s is 333333.3 µs.
        assert_eq!(clock.xmittime_ticks(3, 1), 5_208_334);
        // Saturates instead of wrapping: 1 GB at 1 B/s.
        assert_eq!(clock.xmittime_ticks(1, 1_000_000_000), u32::MAX);
        assert_eq!(clock.xmittime_ticks(0, 10), clock.xmittime_ticks(1, 10));
    }

    #[test]
    fn bursts_hold_10_ms_and_at_least_ten_frames() {
        assert_eq!(burst_bytes(kbit_to_bytes_per_s(1000)), 15_140);
        assert_eq!(burst_bytes(kbit_to_bytes_per_s(20_000)), 25_000);
        assert_eq!(burst_bytes(kbit_to_bytes_per_s(1_000_000)), 1_250_000);
        // A 100 Gbit/s burst still fits the u32 tick field (10 ms = 156250 ticks).
        let clock = PschedClock::KERNEL_DEFAULT;
        let rate = kbit_to_bytes_per_s(100_000_000);
        assert_eq!(clock.xmittime_ticks(rate, burst_bytes(rate)), 156_250);
    }

    #[test]
    fn quanta_are_10_ms_of_the_ceiling_within_htb_bounds() {
        assert_eq!(quantum_bytes(kbit_to_bytes_per_s(64)), 1514);
        assert_eq!(quantum_bytes(kbit_to_bytes_per_s(10_000)), 12_500);
        assert_eq!(quantum_bytes(kbit_to_bytes_per_s(1_000_000)), 200_000);
    }

    #[test]
    fn clients_borrow_above_a_guarantee_that_sums_within_the_parent() {
        let global_kbit = 100_000;
        let client = client_class(5000, global_kbit);
        assert_eq!(client.ceil_bytes_per_s, 625_000);
        assert_eq!(client.rate_bytes_per_s, kbit_to_bytes_per_s(95));
        let default = default_class(global_kbit);
        assert_eq!(default.rate_bytes_per_s, kbit_to_bytes_per_s(5000));
        assert_eq!(default.ceil_bytes_per_s, kbit_to_bytes_per_s(global_kbit));
        let parent = parent_class(global_kbit);
        assert_eq!(parent.rate_bytes_per_s, parent.ceil_bytes_per_s);
        // 1,000 clients and the default class together are guaranteed no more than the
        // parent has.
        assert!(
            1000 * client.rate_bytes_per_s + default.rate_bytes_per_s <= parent.rate_bytes_per_s
        );
        // Never above the client's own limit, never below the floor.
        assert_eq!(client_guarantee_kbit(50, global_kbit), 50);
        assert_eq!(client_guarantee_kbit(5000, 1000), MIN_RATE_KBIT);
        let tiny = client_class(1, 1);
        assert_eq!(tiny.rate_bytes_per_s, tiny.ceil_bytes_per_s);
        assert_eq!(tiny.ceil_bytes_per_s, kbit_to_bytes_per_s(MIN_RATE_KBIT));
    }

    #[test]
    fn htb_opt_round_trips_through_its_kernel_layout() {
        let opt = HtbOpt::new(client_class(5000, 100_000), PschedClock::KERNEL_DEFAULT);
        let bytes = opt.encode();
        assert_eq!(bytes[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(bytes[13], TC_LINKLAYER_ETHERNET);
        assert_eq!(&bytes[20..24], &625_000u32.to_ne_bytes());
        assert!(opt.rate64_attributes().is_empty());
        assert_eq!(HtbOpt::decode(&bytes, None, None), Some((opt, 0)));
        assert_eq!(HtbOpt::decode(&bytes[..40], None, None), None);
    }

    #[test]
    fn rates_past_34_gbit_travel_in_64_bit_attributes() {
        let opt = HtbOpt::new(parent_class(40_000_000), PschedClock::KERNEL_DEFAULT);
        let bytes = opt.encode();
        assert_eq!(&bytes[8..12], &u32::MAX.to_ne_bytes());
        let attributes = opt.rate64_attributes();
        assert_eq!(
            attributes,
            vec![
                (TCA_HTB_RATE64, 5_000_000_000u64.to_ne_bytes()),
                (TCA_HTB_CEIL64, 5_000_000_000u64.to_ne_bytes()),
            ]
        );
        assert_eq!(
            HtbOpt::decode(&bytes, Some(5_000_000_000), Some(5_000_000_000)),
            Some((opt, 0))
        );
    }

    #[test]
    fn glob_names_the_default_class() {
        let glob = encode_glob(0xfffe);
        assert_eq!(&glob[0..4], &3u32.to_ne_bytes());
        assert_eq!(&glob[4..8], &10u32.to_ne_bytes());
        assert_eq!(decode_glob_default(&glob), Some(0xfffe));
    }

    #[test]
    fn pfifo_leaves_hold_about_100_ms() {
        assert_eq!(
            leaf_spec(Leaf::Pfifo, 20_000),
            LeafSpec::Pfifo { limit_packets: 165 }
        );
        assert_eq!(
            leaf_spec(Leaf::Pfifo, 1000),
            LeafSpec::Pfifo { limit_packets: 32 }
        );
        assert_eq!(
            leaf_spec(Leaf::Pfifo, 10_000_000),
            LeafSpec::Pfifo {
                limit_packets: 1000
            }
        );
        assert_eq!(
            leaf_spec(Leaf::FqCodel, 1000),
            leaf_spec(Leaf::FqCodel, 1_000_000)
        );
    }
}
