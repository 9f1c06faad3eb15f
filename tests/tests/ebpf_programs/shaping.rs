//! Speed limits in the programs: a granted client's billable packets carry its HTB class in
//! `skb->priority`, uploads are redirected into the IFB, and what the IFB hands back passes
//! untouched; the box's own traffic keeps the default class.

use hotspotd_common::{Grant, NO_DEADLINE, UNLIMITED_BYTES, Usage, config_word};
use hotspotd_tests::frames::ETH_P_IPV4;

use crate::harness::{
    BOX_V4, CLIENT, CLIENT_V4, Harness, Program, REMOTE_V4, SK_BUFF_INGRESS_IFINDEX, SK_BUFF_LEN,
    SK_BUFF_PRIORITY, TC_ACT_UNSPEC, counters, dns_answer_v4, download, udp_v4, upload,
};

/// What `bpf_redirect` makes a tc program return.
const TC_ACT_REDIRECT: i32 = 7;
/// The IFB's ifindex as the daemon would write it; any number works, `BPF_PROG_TEST_RUN`
/// reports a redirect without carrying it out.
const IFB_IFINDEX: u32 = 77;
const CLASS_DOWN: u32 = 0x0001_0005;
const CLASS_UP: u32 = 0x0002_0005;

fn shaped_client() -> Harness {
    let mut harness = Harness::load();
    let mut grant = Grant::new(5, UNLIMITED_BYTES, NO_DEADLINE);
    grant.class_down = CLASS_DOWN;
    grant.class_up = CLASS_UP;
    harness.grant(CLIENT, grant);
    harness
}

fn priority(skb: &[u8; SK_BUFF_LEN]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&skb[SK_BUFF_PRIORITY..SK_BUFF_PRIORITY + 4]);
    u32::from_ne_bytes(word)
}

#[test]
fn a_download_goes_to_the_clients_class() {
    let harness = shaped_client();
    let frame = download(ETH_P_IPV4, &udp_v4(REMOTE_V4, CLIENT_V4, 100));
    let (verdict, skb) = harness.run_skb(Program::Egress, &frame, &[0; SK_BUFF_LEN]);
    assert_eq!((verdict, priority(&skb)), (TC_ACT_UNSPEC, CLASS_DOWN));
}

#[test]
fn an_upload_is_redirected_into_the_ifb_with_its_class() {
    let mut harness = shaped_client();
    let frame = upload(ETH_P_IPV4, &udp_v4(CLIENT_V4, REMOTE_V4, 100));
    // Without an IFB the class is set and the packet goes on.
    let (verdict, skb) = harness.run_skb(Program::Ingress, &frame, &[0; SK_BUFF_LEN]);
    assert_eq!((verdict, priority(&skb)), (TC_ACT_UNSPEC, CLASS_UP));

    harness.set_config(config_word::IFB_IFINDEX, IFB_IFINDEX);
    let (verdict, skb) = harness.run_skb(Program::Ingress, &frame, &[0; SK_BUFF_LEN]);
    assert_eq!((verdict, priority(&skb)), (TC_ACT_REDIRECT, CLASS_UP));
    assert_eq!(
        harness.usage(CLIENT).expect("counted").up_packets,
        2,
        "both counted once"
    );
}

#[test]
fn what_the_ifb_hands_back_passes_uncounted() {
    let mut harness = shaped_client();
    harness.set_config(config_word::IFB_IFINDEX, IFB_IFINDEX);
    let frame = upload(ETH_P_IPV4, &udp_v4(CLIENT_V4, REMOTE_V4, 100));
    let mut from_ifb = [0u8; SK_BUFF_LEN];
    from_ifb[SK_BUFF_INGRESS_IFINDEX..SK_BUFF_INGRESS_IFINDEX + 4]
        .copy_from_slice(&IFB_IFINDEX.to_ne_bytes());
    let (verdict, _) = harness.run_skb(Program::Ingress, &frame, &from_ifb);
    assert_eq!(
        verdict, TC_ACT_UNSPEC,
        "no second redirect: that would loop"
    );
    assert_eq!(
        harness.usage(CLIENT).map(counters),
        Some(Usage::default()),
        "the packet was counted on its first pass"
    );
}

#[test]
fn traffic_with_the_box_keeps_the_default_class() {
    let mut harness = shaped_client();
    harness.set_config(config_word::IFB_IFINDEX, IFB_IFINDEX);
    harness.add_local_addr(hotspotd_common::IpKey::from_v4(BOX_V4));
    let up = upload(ETH_P_IPV4, &udp_v4(CLIENT_V4, BOX_V4, 100));
    let (verdict, skb) = harness.run_skb(Program::Ingress, &up, &[0; SK_BUFF_LEN]);
    assert_eq!(
        (verdict, priority(&skb)),
        (TC_ACT_UNSPEC, 0),
        "portal traffic is not shaped"
    );
    let down = download(ETH_P_IPV4, &dns_answer_v4(BOX_V4, CLIENT_V4, 100));
    let (verdict, skb) = harness.run_skb(Program::Egress, &down, &[0; SK_BUFF_LEN]);
    assert_eq!((verdict, priority(&skb)), (TC_ACT_UNSPEC, 0));
}
