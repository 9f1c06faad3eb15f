//! What tc shows of a device, read the way an operator would check it: HTB classes, qdiscs and
//! filters, keyed so tests can compare them.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};

use crate::netns::Netns;

fn tc(netns: &Netns, args: &[&str]) -> Result<String> {
    let output = netns.command("tc").args(args).output().context("run tc")?;
    ensure!(
        output.status.success(),
        "tc {args:?} in {}: {}",
        netns.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// `tc class show dev DEV`: each HTB class's line by class id (`1:fffe`).
pub fn classes(netns: &Netns, dev: &str) -> Result<BTreeMap<String, String>> {
    let text = tc(netns, &["class", "show", "dev", dev])?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let id = line.strip_prefix("class htb ")?.split_whitespace().next()?;
            Some((id.to_owned(), line.trim().to_owned()))
        })
        .collect())
}

/// `tc qdisc show dev DEV`: each qdisc's line by parent (`root` for the root).
pub fn qdiscs(netns: &Netns, dev: &str) -> Result<BTreeMap<String, String>> {
    let text = tc(netns, &["qdisc", "show", "dev", dev])?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let parent = match words.get(3) {
                Some(&"root") => "root".to_owned(),
                Some(&"parent") => (*words.get(4)?).to_owned(),
                _ => return None,
            };
            Some((parent, line.trim().to_owned()))
        })
        .collect())
}

/// Every tc filter on DEV, at ingress and egress (clsact) and at the root: what an operator
/// would have to clean up.
pub fn filters(netns: &Netns, dev: &str) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for place in [&["ingress"][..], &["egress"][..], &[][..]] {
        let mut args = vec!["filter", "show", "dev", dev];
        args.extend_from_slice(place);
        // Without a clsact qdisc, ingress/egress have nothing to show and tc says so.
        if let Ok(text) = tc(netns, &args) {
            lines.extend(text.lines().map(str::to_owned));
        }
    }
    Ok(lines)
}

/// The word after `key` in a line tc printed (`rate`, `ceil`, `burst`, …).
#[must_use]
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut words = line.split_whitespace();
    words.find(|word| *word == key)?;
    words.next()
}

/// The ceiling of a spare class hotspotd keeps parked for the next client
/// (`shaping::PARKED`): 8 kbit/s, which no client class has.
pub const PARKED_CEIL: &str = "8Kbit";

/// The ceilings of hotspotd's client classes in use on DEV (not the parent `X:1`, the default
/// `X:fffe` or parked spares), as tc prints them (`5Mbit`), sorted.
pub fn client_ceils(netns: &Netns, dev: &str) -> Result<Vec<String>> {
    let mut ceils: Vec<String> = classes(netns, dev)?
        .into_iter()
        .filter(|(id, _)| !id.ends_with(":1") && !id.ends_with(":fffe"))
        .filter_map(|(_, line)| field(&line, "ceil").map(str::to_owned))
        .filter(|ceil| ceil != PARKED_CEIL)
        .collect();
    ceils.sort();
    Ok(ceils)
}
