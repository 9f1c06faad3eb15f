//! End to end: `hotspotctl` with bad arguments — unknown commands and options, missing and
//! malformed values, overflowing and non-finite numbers, overlong and non-UTF-8 arguments,
//! group MACs, control characters — says what is wrong in one sentence on stderr, prints
//! nothing on stdout, exits non-zero, and changes nothing in the daemon. `--help` and
//! `--version` still print normally. Needs root (namespaces, eBPF).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{Daemon, Lan, hotspotctl_bin};

/// Longest sentence allowed: long enough for clap's "invalid value 'x' for '--y <Y>': why".
const MAX_SENTENCE_CHARS: usize = 500;

/// One refused command line: what it is, its arguments, and a word its sentence must hold.
struct Refused {
    what: &'static str,
    args: Vec<OsString>,
    says: &'static str,
}

fn refused(what: &'static str, args: &[&str], says: &'static str) -> Refused {
    Refused {
        what,
        args: args.iter().map(OsString::from).collect(),
        says,
    }
}

#[expect(clippy::too_many_lines, reason = "one entry per refused command line")]
fn cases(seller: &str, stranger: &str) -> Vec<Refused> {
    let add = |rest: &[&str]| -> Vec<String> {
        let mut args = vec!["session", "add", "--mac", seller];
        args.extend_from_slice(rest);
        args.into_iter().map(str::to_owned).collect()
    };
    let add_refused = |what, rest: &[&str], says| {
        let args = add(rest);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(what, &args, says)
    };
    let long_mac = "a".repeat(100_000);
    let long_provider = "p".repeat(65);
    let mut cases = vec![
        refused("no command", &[], "command"),
        refused("an unknown command", &["conect"], "conect"),
        refused("an unknown option", &["clients", "--verbose"], "--verbose"),
        refused(
            "an option of another command",
            &["status", "--mac", seller],
            "--mac",
        ),
        refused(
            "a missing --mac",
            &["session", "add", "--type", "time"],
            "--mac",
        ),
        refused("a missing value", &["connect", "--mac"], "--mac"),
        refused("a missing subcommand", &["session"], "add, remove"),
        refused("a missing portal subcommand", &["portal"], "dhcp-options"),
        refused(
            "an unknown DHCP server",
            &["portal", "dhcp-options", "--format", "kea"],
            "dnsmasq, odhcpd, radvd, raw",
        ),
        add_refused("a missing --type", &["--time-secs", "60"], "--type"),
        add_refused("an unknown type", &["--type", "3", "--global-speed"], "3"),
        add_refused(
            "negative seconds",
            &["--type", "time", "--time-secs", "-1"],
            "-1",
        ),
        add_refused(
            "seconds beyond u64",
            &["--type", "time", "--time-secs", "18446744073709551616"],
            "18446744073709551616",
        ),
        add_refused(
            "seconds beyond 100 years",
            &[
                "--type",
                "time",
                "--time-secs",
                "18446744073709551615",
                "--global-speed",
            ],
            "100 years",
        ),
        add_refused(
            "seconds as a float",
            &["--type", "time", "--time-secs", "1e3"],
            "1e3",
        ),
        add_refused(
            "infinite megabytes",
            &["--type", "data", "--data-mb", "inf"],
            "inf",
        ),
        add_refused(
            "megabytes that overflow to infinity",
            &["--type", "data", "--data-mb", "1e400"],
            "1e400",
        ),
        add_refused(
            "a petabyte and more",
            &["--type", "data", "--data-mb", "1e308", "--global-speed"],
            "petabyte",
        ),
        add_refused(
            "expiry beyond u32",
            &[
                "--type",
                "time",
                "--time-secs",
                "60",
                "--exp-days",
                "4294967296",
            ],
            "4294967296",
        ),
        add_refused(
            "expiry beyond 100 years",
            &[
                "--type",
                "time",
                "--time-secs",
                "60",
                "--exp-days",
                "4294967295",
                "--global-speed",
            ],
            "exp_days",
        ),
        add_refused(
            "a speed beyond i32",
            &[
                "--type",
                "time",
                "--time-secs",
                "60",
                "--down-mbits",
                "2147483648",
                "--up-mbits",
                "1",
            ],
            "2147483648",
        ),
        add_refused(
            "a negative speed with the global speed",
            &[
                "--type",
                "time",
                "--time-secs",
                "60",
                "--down-mbits",
                "-1",
                "--global-speed",
            ],
            "negative",
        ),
        add_refused(
            "an empty provider",
            &[
                "--type",
                "time",
                "--time-secs",
                "60",
                "--global-speed",
                "--provider",
                "",
            ],
            "provider",
        ),
        add_refused(
            "a provider of 65 characters",
            &[
                "--type",
                "time",
                "--time-secs",
                "60",
                "--global-speed",
                "--provider",
                &long_provider,
            ],
            "provider",
        ),
        add_refused(
            "a provider with an escape sequence",
            &[
                "--type",
                "time",
                "--time-secs",
                "60",
                "--global-speed",
                "--provider",
                "\u{1b}[2J",
            ],
            "control",
        ),
        refused(
            "a broadcast MAC",
            &[
                "session",
                "add",
                "--mac",
                "ff:ff:ff:ff:ff:ff",
                "--type",
                "time",
                "--time-secs",
                "60",
                "--global-speed",
            ],
            "broadcast",
        ),
        refused(
            "a multicast MAC to connect",
            &["connect", "--mac", "01:00:5e:00:00:fb"],
            "multicast",
        ),
        refused(
            "an overlong MAC",
            &["pause", "--mac", &long_mac],
            "not a MAC address",
        ),
        refused(
            "an id that is not a number",
            &["session", "remove", "--id", "abc"],
            "abc",
        ),
        refused(
            "an id beyond i64",
            &["session", "remove", "--id", "9223372036854775808"],
            "9223372036854775808",
        ),
        refused("a negative id", &["session", "remove", "--id", "-5"], "-5"),
        refused(
            "a MAC filter that is no MAC",
            &["sessions", "--mac", "nonsense"],
            "nonsense",
        ),
        refused(
            "connecting a client without sessions",
            &["connect", "--mac", stranger],
            "no session",
        ),
        refused(
            "a socket that is not there",
            &["--socket", "/nonexistent/hotspotd.sock", "status"],
            "cannot reach",
        ),
    ];
    // An argument that is not UTF-8.
    cases.push(Refused {
        what: "an argument that is not UTF-8",
        args: vec![
            OsString::from("connect"),
            OsString::from("--mac"),
            OsString::from_vec(vec![0xff, 0xfe, b':', 0x80]),
        ],
        says: "UTF-8",
    });
    cases
}

#[test]
fn bad_arguments_get_one_sentence_and_change_nothing() -> Result<()> {
    let lan = Lan::new(2)?;
    let (seller, stranger) = (&lan.clients[0].mac, &lan.clients[1].mac);
    let daemon = Daemon::start(&lan, &[])?;
    daemon.add_session(
        seller,
        &["--type", "time", "--time-secs", "60", "--global-speed"],
    )?;
    let before = daemon.ctl_json(&["sessions"])?;

    let cases = cases(seller, stranger);
    for case in &cases {
        // The daemon's socket, unless the case names its own.
        let mut command = Command::new(hotspotctl_bin());
        if case.args.first().is_none_or(|arg| arg != "--socket") {
            command.arg("--socket").arg(daemon.socket());
        }
        let output = command
            .args(&case.args)
            .output()
            .with_context(|| case.what)?;
        let what = case.what;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        ensure!(!output.status.success(), "{what}: accepted");
        ensure!(
            lines.len() == 1,
            "{what}: stderr should be one sentence, got {stderr:?}"
        );
        let sentence = lines[0];
        ensure!(
            sentence.starts_with("hotspotctl: ")
                && sentence.chars().count() > 20
                && sentence.chars().count() <= MAX_SENTENCE_CHARS,
            "{what}: not one sentence of reasonable length: {sentence:?}"
        );
        ensure!(
            sentence.contains(case.says),
            "{what}: the sentence should say what is wrong ({:?}): {sentence:?}",
            case.says
        );
        ensure!(output.stdout.is_empty(), "{what}: printed on stdout");
        eprintln!("{what}: {} {sentence}", output.status);
    }
    let after = daemon.ctl_json(&["sessions"])?;
    ensure!(
        after == before,
        "the sessions changed: {before} then {after}"
    );

    for flag in ["--help", "--version"] {
        let output = Command::new(hotspotctl_bin()).arg(flag).output()?;
        ensure!(
            output.status.success() && !output.stdout.is_empty() && output.stderr.is_empty(),
            "{flag} prints on stdout and succeeds: {output:?}"
        );
    }
    eprintln!("{} bad command lines refused", cases.len());
    Ok(())
}
