use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::{Name, Question, ResourceRecord, TYPE, rdata};

use super::*;
use crate::config::WalledGardenEntry;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn config(entries: &[&str]) -> TestResult<Config> {
    let mut config = Config::default();
    config.network.walled_garden = entries
        .iter()
        .map(|text| text.parse::<WalledGardenEntry>())
        .collect::<Result<_, _>>()?;
    config.network.garden_ttl_floor_secs = 60;
    config.network.garden_ttl_cap_secs = 3_600;
    Ok(config)
}

enum Record<'a> {
    A(&'a str, Ipv4Addr, u32),
    Aaaa(&'a str, Ipv6Addr, u32),
    Cname(&'a str, &'a str),
}

fn answer(question: &str, records: &[Record<'_>]) -> TestResult<Vec<u8>> {
    let mut packet = Packet::new_reply(7);
    packet.questions.push(Question::new(
        Name::new_unchecked(question),
        TYPE::A.into(),
        CLASS::IN.into(),
        false,
    ));
    for record in records {
        let (owner, ttl, data) = match record {
            Record::A(owner, addr, ttl) => (*owner, *ttl, RData::A(rdata::A::from(*addr))),
            Record::Aaaa(owner, addr, ttl) => (*owner, *ttl, RData::AAAA(rdata::AAAA::from(*addr))),
            Record::Cname(owner, target) => (
                *owner,
                300,
                RData::CNAME(rdata::CNAME(Name::new_unchecked(target))),
            ),
        };
        packet.answers.push(ResourceRecord::new(
            Name::new_unchecked(owner),
            CLASS::IN,
            ttl,
            data,
        ));
    }
    Ok(packet.build_bytes_vec_compressed()?)
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn learned(changes: &[Change]) -> Vec<IpAddr> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::Set(addr, _) => Some(*addr),
            Change::Remove(_) => None,
        })
        .collect()
}

#[test]
fn a_configured_name_opens_its_a_and_aaaa_addresses() -> TestResult {
    let mut garden = Garden::new(&config(&["pay.test", "10.0.0.0/8"])?);
    let six: Ipv6Addr = "2001:db8::5".parse()?;
    let message = answer(
        "Pay.Test.",
        &[
            Record::A("pay.test", v4(5), 300),
            Record::Aaaa("pay.test", six, 300),
        ],
    )?;
    let changes = garden.learn(&message, Instant::now());
    assert_eq!(learned(&changes), vec![IpAddr::V4(v4(5)), IpAddr::V6(six)]);
    let Change::Set(_, value) = changes[0] else {
        return Err("expected a set".into());
    };
    assert_eq!(value.ports.any_port, 1);
    assert_eq!(value.name_index, 0);
    Ok(())
}

#[test]
fn other_names_open_nothing() -> TestResult {
    let mut garden = Garden::new(&config(&["pay.test"])?);
    for question in ["other.test", "xpay.test", "test", "pay.test.evil"] {
        let message = answer(question, &[Record::A(question, v4(6), 300)])?;
        assert!(
            garden.learn(&message, Instant::now()).is_empty(),
            "{question}"
        );
    }
    // An address record for the garden's name that the question does not lead to is not
    // believed: it is extra data of another name's answer.
    let message = answer(
        "evil.test",
        &[
            Record::A("evil.test", v4(7), 300),
            Record::A("pay.test", v4(8), 300),
        ],
    )?;
    assert!(garden.learn(&message, Instant::now()).is_empty());
    Ok(())
}

#[test]
fn a_wildcard_covers_subdomains_but_not_the_bare_parent() -> TestResult {
    let mut garden = Garden::new(&config(&["*.cdn.test"])?);
    let message = answer("a.b.cdn.test", &[Record::A("a.b.cdn.test", v4(1), 300)])?;
    assert_eq!(learned(&garden.learn(&message, Instant::now())).len(), 1);
    let message = answer("cdn.test", &[Record::A("cdn.test", v4(2), 300)])?;
    assert!(garden.learn(&message, Instant::now()).is_empty());
    let message = answer("xcdn.test", &[Record::A("xcdn.test", v4(3), 300)])?;
    assert!(garden.learn(&message, Instant::now()).is_empty());
    Ok(())
}

#[test]
fn cname_chains_are_followed_from_the_question() -> TestResult {
    let mut garden = Garden::new(&config(&["pay.test:443"])?);
    let message = answer(
        "pay.test",
        &[
            Record::Cname("pay.test", "edge.cdn.test"),
            Record::Cname("edge.cdn.test", "e1.cdn.test"),
            Record::A("e1.cdn.test", v4(9), 20),
        ],
    )?;
    let changes = garden.learn(&message, Instant::now());
    assert_eq!(learned(&changes), vec![IpAddr::V4(v4(9))]);
    let Change::Set(_, value) = changes[0] else {
        return Err("expected a set".into());
    };
    assert_eq!((value.ports.any_port, value.ports.count), (0, 1));
    assert_eq!(value.ports.ports[0], 443);
    // A garden name reached through a CNAME counts too; a loop ends.
    let mut garden = Garden::new(&config(&["*.cdn.test"])?);
    let message = answer(
        "shop.test",
        &[
            Record::Cname("shop.test", "x.cdn.test"),
            Record::Cname("x.cdn.test", "shop.test"),
            Record::A("x.cdn.test", v4(10), 20),
        ],
    )?;
    assert_eq!(
        learned(&garden.learn(&message, Instant::now())),
        vec![IpAddr::V4(v4(10))]
    );
    Ok(())
}

#[test]
fn ttls_are_clamped_and_addresses_expire() -> TestResult {
    let mut garden = Garden::new(&config(&["pay.test"])?);
    let start = Instant::now();
    let message = answer(
        "pay.test",
        &[
            Record::A("pay.test", v4(1), 0),
            Record::A("pay.test", v4(2), 1_000_000),
        ],
    )?;
    garden.learn(&message, start);
    assert!(garden.expire(start + Duration::from_secs(59)).is_empty());
    assert_eq!(
        garden.expire(start + Duration::from_mins(1)),
        vec![Change::Remove(IpAddr::V4(v4(1)))]
    );
    assert!(garden.expire(start + Duration::from_secs(3_599)).is_empty());
    assert_eq!(
        garden.expire(start + Duration::from_hours(1)),
        vec![Change::Remove(IpAddr::V4(v4(2)))]
    );
    assert_eq!(garden.counts().expired, 2);
    Ok(())
}

#[test]
fn a_new_answer_extends_the_expiry() -> TestResult {
    let mut garden = Garden::new(&config(&["pay.test"])?);
    let start = Instant::now();
    let message = answer("pay.test", &[Record::A("pay.test", v4(1), 100)])?;
    garden.learn(&message, start);
    garden.learn(&message, start + Duration::from_secs(50));
    assert!(garden.expire(start + Duration::from_mins(2)).is_empty());
    assert_eq!(garden.expire(start + Duration::from_secs(150)).len(), 1);
    Ok(())
}

#[test]
fn at_capacity_the_oldest_learned_goes_first() -> TestResult {
    let mut garden = Garden::new(&config(&["pay.test"])?);
    garden.capacity = 3;
    let now = Instant::now();
    for last in 1..=3 {
        garden.learn(
            &answer("pay.test", &[Record::A("pay.test", v4(last), 300)])?,
            now,
        );
    }
    // Learning 1 again makes 2 the oldest.
    garden.learn(
        &answer("pay.test", &[Record::A("pay.test", v4(1), 300)])?,
        now,
    );
    let changes = garden.learn(
        &answer("pay.test", &[Record::A("pay.test", v4(4), 300)])?,
        now,
    );
    assert_eq!(changes[0], Change::Remove(IpAddr::V4(v4(2))));
    assert_eq!(learned(&changes), vec![IpAddr::V4(v4(4))]);
    assert_eq!(garden.learned_count(), 3);
    assert_eq!(garden.counts().dropped_full, 1);
    Ok(())
}

#[test]
fn a_reload_keeps_the_addresses_of_remaining_names() -> TestResult {
    let mut garden = Garden::new(&config(&["gone.test", "pay.test"])?);
    let now = Instant::now();
    garden.learn(
        &answer("gone.test", &[Record::A("gone.test", v4(1), 300)])?,
        now,
    );
    garden.learn(
        &answer("pay.test", &[Record::A("pay.test", v4(2), 300)])?,
        now,
    );
    let changes = garden.configure(&config(&["pay.test:443"])?);
    assert!(changes.contains(&Change::Remove(IpAddr::V4(v4(1)))));
    let kept = changes.iter().find_map(|change| match change {
        Change::Set(addr, value) if *addr == IpAddr::V4(v4(2)) => Some(*value),
        _ => None,
    });
    let kept = kept.ok_or("pay.test's address was not kept")?;
    assert_eq!(
        (kept.name_index, kept.ports.count, kept.ports.ports[0]),
        (0, 1, 443)
    );
    Ok(())
}

#[test]
fn queries_errors_and_malformed_messages_are_not_learned() -> TestResult {
    let mut garden = Garden::new(&config(&["pay.test"])?);
    let mut query = Packet::new_query(1);
    query.questions.push(Question::new(
        Name::new_unchecked("pay.test"),
        TYPE::A.into(),
        CLASS::IN.into(),
        false,
    ));
    query.answers.push(ResourceRecord::new(
        Name::new_unchecked("pay.test"),
        CLASS::IN,
        60,
        RData::A(rdata::A::from(v4(1))),
    ));
    assert!(
        garden
            .learn(&query.build_bytes_vec()?, Instant::now())
            .is_empty()
    );
    let good = answer("pay.test", &[Record::A("pay.test", v4(1), 300)])?;
    assert!(
        garden
            .learn(&good[..good.len() - 2], Instant::now())
            .is_empty()
    );
    assert!(garden.learn(&[], Instant::now()).is_empty());
    assert_eq!(garden.counts().malformed, 3);
    Ok(())
}

#[test]
fn the_portal_host_is_in_the_garden_in_external_mode() -> TestResult {
    let mut config = config(&["pay.test"])?;
    config.portal.mode = PortalMode::External;
    config.portal.url = "https://Portal.Example.net/login?x=1".to_owned();
    let names: Vec<String> = names_of(&config).iter().map(ToString::to_string).collect();
    assert_eq!(names, ["pay.test", "portal.example.net:443"]);
    config.portal.url = "http://portal.example.net:8080".to_owned();
    assert_eq!(names_of(&config)[1].to_string(), "portal.example.net:8080");
    config.portal.url = "http://192.0.2.1/".to_owned();
    assert_eq!(names_of(&config).len(), 1);
    config.portal.mode = PortalMode::Builtin;
    config.portal.url = "https://portal.example.net/".to_owned();
    assert_eq!(names_of(&config).len(), 1);
    Ok(())
}

/// xorshift64*: a fixed sequence, so a failure repeats.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

/// No byte string crashes or stalls the parser: random ones, and real answers with bytes
/// changed, cut, inserted and label pointers aimed anywhere (loops among them).
#[test]
fn fuzzed_answers_never_crash_or_stall() -> TestResult {
    let mut garden = Garden::new(&config(&["pay.test", "*.cdn.test"])?);
    let seeds = [
        answer(
            "pay.test",
            &[
                Record::Cname("pay.test", "a.cdn.test"),
                Record::A("a.cdn.test", v4(1), 60),
                Record::Aaaa("a.cdn.test", "2001:db8::1".parse()?, 60),
            ],
        )?,
        answer("x.cdn.test", &[Record::A("x.cdn.test", v4(2), 60)])?,
    ];
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let started = std::time::Instant::now();
    for round in 0..50_000 {
        let message: Vec<u8> = if round % 4 == 0 {
            let len = random.below(600);
            (0..len).map(|_| random.byte()).collect()
        } else {
            let mut message = seeds[round % 2].clone();
            for _ in 0..=random.below(6) {
                let at = random.below(message.len());
                match random.below(4) {
                    0 => message[at] = random.byte(),
                    1 => message.truncate(at.max(1)),
                    2 => message.insert(at, random.byte()),
                    _ => {
                        // A compression pointer to anywhere.
                        message[at] = 0xc0;
                        if at + 1 < message.len() {
                            message[at + 1] = random.byte();
                        }
                    }
                }
            }
            message
        };
        let _ = garden.learn(&message, Instant::now());
    }
    assert!(garden.learned_count() <= garden.capacity);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "50,000 answers took {:?}",
        started.elapsed()
    );
    Ok(())
}
