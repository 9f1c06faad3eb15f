//! Unit tests of loading and validating the configuration: defaults, the file and the
//! environment in order, and the one-sentence error for each kind of mistake.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    num::NonZeroU16,
};

use super::keys::{KEYS, SECTIONS};
use super::*;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Loads `toml` as a file named `config.toml` in a temporary directory, with the given
/// variables; also returns the directory, so that messages can be shown without it.
fn load_toml_in_dir(
    toml: &str,
    env: &[(&str, &str)],
) -> TestResult<(Result<Config, ConfigError>, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml)?;
    let result = Config::load_from(Some(&path), owned(env));
    Ok((result, format!("{}/", dir.path().display())))
}

fn load_toml(toml: &str, env: &[(&str, &str)]) -> TestResult<Config> {
    Ok(load_toml_in_dir(toml, env)?.0?)
}

/// The error as the user reads it, with the temporary directory taken out.
fn error_for(toml: &str, env: &[(&str, &str)]) -> TestResult<String> {
    let (result, dir) = load_toml_in_dir(toml, env)?;
    Ok(refused(result).to_string().replace(&dir, ""))
}

fn refused<T: fmt::Debug>(result: Result<T, ConfigError>) -> ConfigError {
    match result {
        Ok(accepted) => panic!("accepted: {accepted:?}"),
        Err(error) => error,
    }
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn entry(text: &str) -> TestResult<WalledGardenEntry> {
    Ok(text.parse()?)
}

#[test]
fn defaults_are_those_of_interface_md() -> TestResult {
    let config = Config::default();
    assert_eq!(config.network.lan_interface, "br-lan");
    assert_eq!(config.network.ifb_interface, "ifb-hotspot");
    assert!(config.network.walled_garden.is_empty());
    assert_eq!(config.speed.global_down_mbits, 100);
    assert_eq!(config.speed.global_up_mbits, 100);
    assert_eq!(config.accounting.poll_interval_ms, 1000);
    assert_eq!(config.accounting.bytes_per_mb, 1_000_000);
    assert_eq!(config.sessions.queue_order, QueueOrder::OldestFirst);
    assert_eq!(config.sessions.idle_pause_secs, 0);
    assert_eq!(
        config.store.sqlite_path,
        Path::new("/var/lib/hotspotd/sessions.db")
    );
    assert_eq!(config.store.save_interval_secs, 30);
    assert_eq!(config.api.socket, Path::new("/run/hotspotd/hotspotd.sock"));
    assert_eq!(config.kernel.pin_dir, Path::new("/sys/fs/bpf/hotspotd"));
    config.validate()?;
    assert_eq!(config.poll_interval(), Duration::from_secs(1));
    assert_eq!(config.save_interval(), Duration::from_secs(30));
    assert_eq!(config.idle_pause(), None);
    Ok(())
}

#[test]
fn no_file_and_no_variables_give_the_defaults() -> TestResult {
    let config = Config::load_from(None, Vec::new())?;
    assert_eq!(config, Config::default());
    let unrelated = owned(&[
        ("PATH", "/bin"),
        ("HOTSPOTD_SPEED", "x"),
        ("HOTSPOTDX__A", "1"),
    ]);
    assert_eq!(Config::load_from(None, unrelated)?, Config::default());
    Ok(())
}

#[test]
fn empty_file_gives_the_defaults() -> TestResult {
    assert_eq!(load_toml("", &[])?, Config::default());
    assert_eq!(load_toml("[speed]\n[kernel]\n", &[])?, Config::default());
    Ok(())
}

#[test]
fn the_file_overrides_the_defaults_key_by_key() -> TestResult {
    let config = load_toml(
        r#"
        [network]
        lan_interface = "wlan0"
        walled_garden = ["10.0.0.0/8", "192.0.2.1:443", "2001:db8::/32", "[2001:db8::1]:80"]
        [speed]
        global_down_mbits = 50
        [accounting]
        poll_interval_ms = 250
        [sessions]
        queue_order = "newest_first"
        idle_pause_secs = 90
        [store]
        sqlite_path = "/tmp/sessions.db"
        [kernel]
        pin_dir = "/sys/fs/bpf/test-1"
        "#,
        &[],
    )?;
    let mut expected = Config::default();
    expected.network.lan_interface = "wlan0".to_owned();
    expected.network.walled_garden = vec![
        entry("10.0.0.0/8")?,
        entry("192.0.2.1:443")?,
        entry("2001:db8::/32")?,
        entry("[2001:db8::1]:80")?,
    ];
    expected.speed.global_down_mbits = 50;
    expected.accounting.poll_interval_ms = 250;
    expected.sessions.queue_order = QueueOrder::NewestFirst;
    expected.sessions.idle_pause_secs = 90;
    expected.store.sqlite_path = PathBuf::from("/tmp/sessions.db");
    expected.kernel.pin_dir = PathBuf::from("/sys/fs/bpf/test-1");
    assert_eq!(config, expected);
    assert_eq!(config.poll_interval(), Duration::from_millis(250));
    assert_eq!(config.idle_pause(), Some(Duration::from_secs(90)));
    Ok(())
}

#[test]
fn the_environment_overrides_the_file() -> TestResult {
    let config = load_toml(
        "[network]\nlan_interface = \"wlan0\"\nwalled_garden = [\"10.0.0.0/8\"]\n\
         [accounting]\npoll_interval_ms = 500\n",
        &[
            ("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "100"),
            ("HOTSPOTD__NETWORK__LAN_INTERFACE", "br-guest"),
            ("HOTSPOTD__SESSIONS__QUEUE_ORDER", "newest_first"),
            ("HOTSPOTD__API__SOCKET", "/tmp/api.sock"),
            ("hotspotd__speed__global_up_mbits", "20"),
        ],
    )?;
    assert_eq!(config.accounting.poll_interval_ms, 100);
    assert_eq!(config.network.lan_interface, "br-guest");
    assert_eq!(config.network.walled_garden, vec![entry("10.0.0.0/8")?]);
    assert_eq!(config.sessions.queue_order, QueueOrder::NewestFirst);
    assert_eq!(config.api.socket, Path::new("/tmp/api.sock"));
    assert_eq!(config.speed.global_up_mbits, 20);
    assert_eq!(config.speed.global_down_mbits, 100);
    Ok(())
}

#[test]
fn text_from_the_environment_stays_text() -> TestResult {
    // try_parsing would make these a number, a float and a boolean.
    for name in ["1234", "1e5", "nan", "true"] {
        let env = owned(&[("HOTSPOTD__NETWORK__LAN_INTERFACE", name)]);
        let config = Config::load_from(None, env)?;
        assert_eq!(config.network.lan_interface, name);
    }
    Ok(())
}

#[test]
fn walled_garden_from_the_environment_is_comma_separated() -> TestResult {
    let env = owned(&[(
        "HOTSPOTD__NETWORK__WALLED_GARDEN",
        "10.0.0.0/8, [2001:db8::/32]:443,192.0.2.7",
    )]);
    let config = Config::load_from(None, env)?;
    assert_eq!(
        config.network.walled_garden,
        vec![
            entry("10.0.0.0/8")?,
            entry("[2001:db8::/32]:443")?,
            entry("192.0.2.7/32")?
        ]
    );
    // An empty variable empties the file's list.
    let config = load_toml(
        "[network]\nwalled_garden = [\"10.0.0.0/8\"]\n",
        &[("HOTSPOTD__NETWORK__WALLED_GARDEN", "")],
    )?;
    assert!(config.network.walled_garden.is_empty());
    Ok(())
}

#[test]
fn each_bad_value_names_its_key_and_what_is_allowed() -> TestResult {
    for (toml, expected) in [
        (
            "[speed]\nglobal_down_mbits = -5",
            "config.toml: speed.global_down_mbits must be > 0 (got -5)",
        ),
        (
            "[speed]\nglobal_up_mbits = 0",
            "config.toml: speed.global_up_mbits must be > 0 (got 0)",
        ),
        (
            "[speed]\nglobal_down_mbits = 5000000000",
            "config.toml: speed.global_down_mbits must be at most 4294967295 (got 5000000000)",
        ),
        (
            "[speed]\nglobal_down_mbits = \"fast\"",
            "config.toml: speed.global_down_mbits must be a whole number (got \"fast\")",
        ),
        (
            "[speed]\nglobal_up_mbits = 1.5",
            "config.toml: speed.global_up_mbits must be a whole number (got 1.5)",
        ),
        (
            "[speed]\nglobal_up_mbits = true",
            "config.toml: speed.global_up_mbits must be a whole number (got true)",
        ),
        (
            "[accounting]\npoll_interval_ms = 5",
            "config.toml: accounting.poll_interval_ms must be between 10 and 60000 (got 5)",
        ),
        (
            "[accounting]\npoll_interval_ms = 60001",
            "config.toml: accounting.poll_interval_ms must be between 10 and 60000 (got 60001)",
        ),
        (
            "[accounting]\nbytes_per_mb = 0",
            "config.toml: accounting.bytes_per_mb must be > 0 (got 0)",
        ),
        (
            "[sessions]\nidle_pause_secs = -1",
            "config.toml: sessions.idle_pause_secs must be >= 0 (got -1)",
        ),
        (
            "[sessions]\nqueue_order = \"random\"",
            "config.toml: sessions.queue_order must be \"oldest_first\" or \"newest_first\" \
             (got \"random\")",
        ),
        (
            "[sessions]\nqueue_order = 1",
            "config.toml: sessions.queue_order must be \"oldest_first\" or \"newest_first\" \
             (got 1)",
        ),
        (
            "[store]\nsave_interval_secs = 0",
            "config.toml: store.save_interval_secs must be between 1 and 86400 (got 0)",
        ),
        (
            "[store]\nsave_interval_secs = 86401",
            "config.toml: store.save_interval_secs must be between 1 and 86400 (got 86401)",
        ),
        (
            "[store]\nsqlite_path = \"\"",
            "config.toml: store.sqlite_path must not be empty",
        ),
        (
            "[store]\nsqlite_path = 7",
            "config.toml: store.sqlite_path must be a string (got 7)",
        ),
        (
            "[kernel]\npin_dir = \"\"",
            "config.toml: kernel.pin_dir must not be empty",
        ),
        (
            "[network]\nlan_interface = 5",
            "config.toml: network.lan_interface must be a string (got 5)",
        ),
        (
            "[network]\nifb_interface = \"br-lan\"",
            "config.toml: network.ifb_interface must differ from network.lan_interface \
             (both are \"br-lan\")",
        ),
        (
            "[network]\nwalled_garden = \"10.0.0.0/8\"",
            "config.toml: network.walled_garden must be a list of strings like \
             [\"10.0.0.0/8\", \"[2001:db8::/32]:443\", \"pay.example.com\"] \
             (got \"10.0.0.0/8\")",
        ),
        (
            "[network]\nwalled_garden = [8]",
            "config.toml: network.walled_garden must be a list of strings (got 8 in it)",
        ),
        (
            "speed = 5",
            "config.toml: speed must be a table, [speed] in TOML (got 5)",
        ),
    ] {
        assert_eq!(error_for(toml, &[])?, expected, "{toml}");
    }
    Ok(())
}

#[test]
fn bad_interface_names_are_refused() -> TestResult {
    for name in [
        "",
        "sixteen-bytes-xx",
        "br/lan",
        "br lan",
        "br:0",
        "br\tlan",
        ".",
        "..",
    ] {
        let toml = format!("[network]\nlan_interface = {name:?}");
        let expected = format!(
            "config.toml: network.lan_interface must be a Linux interface name: 1 to 15 \
             bytes, not \".\" or \"..\", without '/', ':' or whitespace (got {name:?})"
        );
        assert_eq!(error_for(&toml, &[])?, expected, "{name:?}");
    }
    assert_eq!(
        error_for("[network]\nifb_interface = \"a b\"", &[])?,
        "config.toml: network.ifb_interface must be a Linux interface name: 1 to 15 bytes, \
         not \".\" or \"..\", without '/', ':' or whitespace (got \"a b\")"
    );
    load_toml("[network]\nlan_interface = \"fifteen-bytes-x\"", &[])?;
    Ok(())
}

#[test]
fn bad_walled_garden_entries_are_refused_with_the_reason() -> TestResult {
    let hint = "; write 10.0.0.0/8, 192.0.2.1:443, [2001:db8::/32]:443, pay.example.com or \
                *.example.com:443";
    for (text, reason) in [
        (
            "10.0.0.0/33",
            "the prefix length must be a number from 0 to 32 (got '33')",
        ),
        (
            "2001:db8::/129",
            "the prefix length must be a number from 0 to 128 (got '129')",
        ),
        (
            "10.0.0.0/x",
            "the prefix length must be a number from 0 to 32 (got 'x')",
        ),
        (
            "10.0.0.0/",
            "the prefix length must be a number from 0 to 32 (got '')",
        ),
        (
            "10.0.0.1/8",
            "the address has bits set past the prefix; did you mean 10.0.0.0/8?",
        ),
        (
            "pay..example.com",
            "'pay..example.com' is not a host name: each part between dots must have 1 to 63 \
             characters",
        ),
        (
            "pay.*.example.com",
            "'pay.*.example.com' is not a host name: a '*' may only stand first, as in \
             *.example.com",
        ),
        (
            "*.com",
            "'*.com' is not a host name: a wildcard must name a domain with a dot, as in \
             *.example.com",
        ),
        (
            "pay_ex ample.com",
            "'pay_ex ample.com' is not a host name: a host name has only letters, digits, '-' \
             and '_' between its dots",
        ),
        (
            "-pay.example.com",
            "'-pay.example.com' is not a host name: no part of a host name starts or ends with \
             '-'",
        ),
        (
            "pay.example.com:0",
            "the port must be a number from 1 to 65535 (got '0')",
        ),
        ("10.0.0.300", "'10.0.0.300' is not an IPv4 or IPv6 address"),
        ("", "'' is not an IPv4 or IPv6 address"),
        (
            "10.0.0.0/8:0",
            "the port must be a number from 1 to 65535 (got '0')",
        ),
        (
            "10.0.0.0/8:70000",
            "the port must be a number from 1 to 65535 (got '70000')",
        ),
        (
            "10.0.0.0/8:",
            "the port must be a number from 1 to 65535 (got '')",
        ),
        (
            "[2001:db8::/32]443",
            "the port must be a number from 1 to 65535 (got '443')",
        ),
        ("[2001:db8::/32:443", "has a '[' without its ']'"),
        // A port after an IPv6 network needs brackets.
        (
            "2001:db8::/32:443",
            "the prefix length must be a number from 0 to 128 (got '32:443')",
        ),
    ] {
        let toml = format!("[network]\nwalled_garden = [\"10.1.0.0/16\", {text:?}]");
        let expected = format!(
            "config.toml: network.walled_garden has an invalid entry {text:?}: {reason}{hint}"
        );
        assert_eq!(error_for(&toml, &[])?, expected, "{text}");
    }
    Ok(())
}

#[test]
fn walled_garden_host_names_parse_and_print_back() -> TestResult {
    for (text, name, wildcard, port, shown) in [
        (
            "pay.example.com",
            "pay.example.com",
            false,
            None,
            "pay.example.com",
        ),
        (
            "Pay.Example.COM.",
            "pay.example.com",
            false,
            None,
            "pay.example.com",
        ),
        ("*.example.com", "example.com", true, None, "*.example.com"),
        (
            "*.example.com:443",
            "example.com",
            true,
            Some(443),
            "*.example.com:443",
        ),
        (
            "localhost:8080",
            "localhost",
            false,
            Some(8080),
            "localhost:8080",
        ),
        (
            "xn--bcher-kva.example",
            "xn--bcher-kva.example",
            false,
            None,
            "xn--bcher-kva.example",
        ),
    ] {
        let parsed = entry(text)?;
        let parsed = parsed.name().ok_or(text)?;
        assert_eq!(parsed.name, name, "{text}");
        assert_eq!(parsed.wildcard, wildcard, "{text}");
        assert_eq!(parsed.port.map(NonZeroU16::get), port, "{text}");
        assert_eq!(parsed.to_string(), shown, "{text}");
        assert_eq!(entry(shown)?.name(), Some(parsed), "{text}");
    }
    Ok(())
}

#[test]
fn walled_garden_entries_parse_and_print_back() -> TestResult {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    for (text, addr, prefix_len, port, shown) in [
        ("10.0.0.0/8", v4(10, 0, 0, 0), 8, None, "10.0.0.0/8"),
        ("192.0.2.1", v4(192, 0, 2, 1), 32, None, "192.0.2.1/32"),
        (
            "192.0.2.1:443",
            v4(192, 0, 2, 1),
            32,
            Some(443),
            "192.0.2.1/32:443",
        ),
        ("0.0.0.0/0:53", v4(0, 0, 0, 0), 0, Some(53), "0.0.0.0/0:53"),
        (
            "[10.0.0.0/8]:80",
            v4(10, 0, 0, 0),
            8,
            Some(80),
            "10.0.0.0/8:80",
        ),
        (
            "2001:db8::/32",
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
            32,
            None,
            "2001:db8::/32",
        ),
        (
            "2001:db8::1",
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            128,
            None,
            "2001:db8::1/128",
        ),
        (
            "[2001:db8::/32]:443",
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
            32,
            Some(443),
            "[2001:db8::/32]:443",
        ),
        (
            "[::1]",
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            128,
            None,
            "::1/128",
        ),
    ] {
        let parsed = entry(text)?;
        let parsed = parsed.net().ok_or(text)?;
        assert_eq!(parsed.net.addr(), addr, "{text}");
        assert_eq!(parsed.net.prefix_len(), prefix_len, "{text}");
        assert_eq!(parsed.port.map(NonZeroU16::get), port, "{text}");
        assert_eq!(parsed.to_string(), shown, "{text}");
        assert_eq!(entry(shown)?.net(), Some(parsed), "{text}");
    }
    Ok(())
}

#[test]
fn unknown_keys_and_sections_are_refused_with_the_allowed_ones() -> TestResult {
    assert_eq!(
        error_for("[speed]\nglobal_dwn_mbits = 5", &[])?,
        "config.toml: unknown key 'speed.global_dwn_mbits' \
         (allowed: global_down_mbits, global_up_mbits, classes_ready)"
    );
    assert_eq!(
        error_for("[network]\nwalled_gardens = []", &[])?,
        "config.toml: unknown key 'network.walled_gardens' \
         (allowed: lan_interface, ifb_interface, walled_garden, local_services, \
         garden_ttl_floor_secs, garden_ttl_cap_secs)"
    );
    assert_eq!(
        error_for("[sped]\nglobal_down_mbits = 5", &[])?,
        "config.toml: unknown section 'sped' \
         (allowed: network, speed, accounting, sessions, store, api, kernel, events, portal, vouchers, history, sales, radius)"
    );
    let short = error_for("[vouchers]\ncode_length = 8", &[])?;
    assert!(
        short.contains("vouchers.code_length") && short.contains('9'),
        "a code under 40 bits is refused: {short}"
    );
    assert_eq!(
        error_for("poll_interval_ms = 5", &[])?,
        "config.toml: unknown section 'poll_interval_ms' \
         (allowed: network, speed, accounting, sessions, store, api, kernel, events, portal, vouchers, history, sales, radius)"
    );
    assert_eq!(
        error_for("[Speed]\n", &[])?,
        "config.toml: unknown section 'Speed' \
         (allowed: network, speed, accounting, sessions, store, api, kernel, events, portal, vouchers, history, sales, radius)"
    );
    Ok(())
}

#[test]
fn errors_from_the_environment_name_the_variable() -> TestResult {
    assert_eq!(
        error_for("", &[("HOTSPOTD__SPEED__GLOBAL_DOWN_MBITS", "-5")])?,
        "environment variable HOTSPOTD__SPEED__GLOBAL_DOWN_MBITS: \
         speed.global_down_mbits must be > 0 (got -5)"
    );
    assert_eq!(
        error_for(
            "[accounting]\npoll_interval_ms = 100",
            &[("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "fast")]
        )?,
        "environment variable HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS: \
         accounting.poll_interval_ms must be a whole number (got \"fast\")"
    );
    assert_eq!(
        error_for("", &[("HOTSPOTD__SPEED__GLOBAL_DWN_MBITS", "5")])?,
        "environment variable HOTSPOTD__SPEED__GLOBAL_DWN_MBITS: unknown key \
         'speed.global_dwn_mbits' (allowed: global_down_mbits, global_up_mbits, classes_ready)"
    );
    assert_eq!(
        error_for("", &[("HOTSPOTD__NETWORK__LAN_INTERFACE", "ifb-hotspot")])?,
        "environment variable HOTSPOTD__NETWORK__LAN_INTERFACE: \
         network.lan_interface must differ from network.ifb_interface \
         (both are \"ifb-hotspot\")"
    );
    assert_eq!(
        error_for("", &[("HOTSPOTD__NETWORK__IFB_INTERFACE", "br-lan")])?,
        "environment variable HOTSPOTD__NETWORK__IFB_INTERFACE: \
         network.ifb_interface must differ from network.lan_interface (both are \"br-lan\")"
    );
    assert_eq!(
        error_for(
            "",
            &[("HOTSPOTD__NETWORK__WALLED_GARDEN", "10.0.0.0/8,10.0.0.0/40")]
        )?,
        "environment variable HOTSPOTD__NETWORK__WALLED_GARDEN: network.walled_garden has \
         an invalid entry \"10.0.0.0/40\": the prefix length must be a number from 0 to 32 \
         (got '40'); write 10.0.0.0/8, 192.0.2.1:443, [2001:db8::/32]:443, pay.example.com \
         or *.example.com:443"
    );
    // Without a file, a bad variable still names itself.
    let error = refused(Config::load_from(
        None,
        owned(&[("HOTSPOTD__API__SOCKET", "")]),
    ));
    assert_eq!(
        error.to_string(),
        "environment variable HOTSPOTD__API__SOCKET: api.socket must not be empty"
    );
    Ok(())
}

#[test]
fn a_missing_file_says_to_pass_an_existing_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("missing.toml");
    let error = refused(Config::load_from(Some(&path), Vec::new()));
    assert!(
        matches!(&error, ConfigError::Read { path: p, .. } if *p == path),
        "{error:?}"
    );
    // What hotspotd prints: the error, then its cause.
    assert_eq!(
        crate::text::chain_string(&error),
        format!(
            "{}: cannot read; pass --config with an existing file: No such file or directory \
             (os error 2)",
            path.display()
        )
    );
    Ok(())
}

#[test]
fn a_toml_syntax_error_is_one_line_with_its_position() -> TestResult {
    assert_eq!(
        error_for("[speed]\nglobal_down_mbits = \n", &[])?,
        "config.toml: invalid TOML at line 2, column 21: string values must be quoted, \
         expected literal string"
    );
    assert_eq!(
        error_for("[speed\n", &[])?,
        "config.toml: invalid TOML at line 1, column 7: unclosed table, expected `]`"
    );
    Ok(())
}

#[test]
fn validate_checks_a_config_built_in_code() -> TestResult {
    let mut config = Config::default();
    config.speed.global_down_mbits = 0;
    let error = refused(config.validate());
    assert!(
        matches!(
            &error,
            ConfigError::Invalid {
                key: "speed.global_down_mbits",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "configuration: speed.global_down_mbits must be > 0 (got 0)"
    );

    let mut config = Config::default();
    config.api.socket = PathBuf::from(format!("/run/{}", "s".repeat(103)));
    assert_eq!(
        refused(config.validate()).to_string(),
        "configuration: api.socket must be at most 107 bytes long, the limit of a Unix \
         socket path (got 108 bytes)"
    );
    config.api.socket = PathBuf::from(format!("/run/{}", "s".repeat(102)));
    config.validate()?;

    let mut config = Config::default();
    config.network.lan_interface = "ifb-hotspot".to_owned();
    assert_eq!(
        refused(config.validate()).to_string(),
        "configuration: network.ifb_interface must differ from network.lan_interface \
         (both are \"ifb-hotspot\")"
    );
    Ok(())
}

#[test]
fn the_key_table_matches_the_structs() -> TestResult {
    let json = serde_json::to_value(Config::default())?;
    let mut from_structs = Vec::new();
    let mut sections = Vec::new();
    for (section, keys) in json.as_object().ok_or("a map")? {
        sections.push(section.as_str());
        for key in keys.as_object().ok_or("a map")?.keys() {
            from_structs.push(format!("{section}.{key}"));
        }
    }
    let mut from_table: Vec<String> = KEYS.iter().map(|key| key.path().to_owned()).collect();
    from_structs.sort();
    from_table.sort();
    assert_eq!(from_table, from_structs);
    sections.sort_unstable();
    let mut known = SECTIONS.to_vec();
    known.sort_unstable();
    assert_eq!(known, sections);
    let names = serde_json::to_value([QueueOrder::OldestFirst, QueueOrder::NewestFirst])?;
    assert_eq!(names, serde_json::json!(QueueOrder::NAMES));
    Ok(())
}

#[test]
fn the_tcp_api_is_loopback_only_and_needs_a_token() -> TestResult {
    let refused = error_for(
        "[api]\ntcp_listen = \"192.0.2.1:8080\"\ntoken_file = \"/t\"",
        &[],
    )?;
    assert!(
        refused.contains("api.tcp_listen") && refused.contains("not a loopback"),
        "{refused}"
    );
    let allowed = load_toml(
        "[api]\ntcp_listen = \"192.0.2.1:8080\"\ntoken_file = \"/t\"\nallow_non_loopback = true",
        &[],
    )?;
    assert_eq!(allowed.api.tcp_address().map(|a| a.port()), Some(8080));
    let no_token = error_for("[api]\ntcp_listen = \"127.0.0.1:8080\"", &[])?;
    assert!(no_token.contains("api.token_file"), "{no_token}");
    let garbled = error_for(
        "[api]\ntcp_listen = \"localhost\"\ntoken_file = \"/t\"",
        &[],
    )?;
    assert!(garbled.contains("like 127.0.0.1:8080"), "{garbled}");
    let not_bool = error_for("[api]\nallow_non_loopback = \"yes\"", &[])?;
    assert!(not_bool.contains("must be true or false"), "{not_bool}");
    let v6 = load_toml(
        "[api]\ntcp_listen = \"[::1]:9000\"\ntoken_file = \"/t\"",
        &[],
    )?;
    assert!(v6.api.tcp_address().is_some_and(|a| a.ip().is_loopback()));
    Ok(())
}

#[test]
fn portal_urls_are_web_addresses_and_external_needs_one() -> TestResult {
    assert_eq!(
        error_for("[portal]\nurl = \"ftp://portal.example\"", &[])?,
        "config.toml: portal.url must be empty or an http:// or https:// address \
         without spaces (got \"ftp://portal.example\")"
    );
    assert_eq!(
        error_for("[portal]\nmode = \"external\"", &[])?,
        "config.toml: portal.url must name the operator's portal when \
         portal.mode = \"external\""
    );
    assert_eq!(
        error_for("[portal]\nmode = \"outside\"", &[])?,
        "config.toml: portal.mode must be \"builtin\" or \"external\" or \"off\" \
         (got \"outside\")"
    );
    Ok(())
}

#[test]
fn the_portals_certificate_and_key_go_together_on_their_own_port() -> TestResult {
    assert_eq!(
        error_for("[portal]\ntls_cert = \"/etc/hotspotd/portal.pem\"", &[])?,
        "config.toml: portal.tls_cert and portal.tls_key go together: set both (HTTPS) or \
         neither (plain HTTP only)"
    );
    let only_key = error_for(
        "[portal]",
        &[("HOTSPOTD__PORTAL__TLS_KEY", "/etc/hotspotd/portal.key")],
    )?;
    assert!(only_key.contains("go together"), "{only_key}");
    assert_eq!(
        error_for(
            "[portal]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\ntls_port = 2050",
            &[]
        )?,
        "config.toml: portal.tls_port must differ from portal.listen_port (both are 2050): \
         HTTPS and plain HTTP each need their own port"
    );
    assert_eq!(
        error_for("[portal]\ntls_port = 0", &[])?,
        "config.toml: portal.tls_port must be between 1 and 65535 (got 0)"
    );
    // The files are read only when both are set; errors about them are end to end
    // (tests/tests/portal_tls.rs), with real certificates.
    let defaults = load_toml("[portal]\ntls_port = 8443", &[])?;
    assert!(!defaults.portal.tls_enabled());
    Ok(())
}

#[test]
fn the_rfc_8910_keys_take_what_dhcp_and_dns_can_carry() -> TestResult {
    let defaults = Config::default().portal;
    assert_eq!(
        (defaults.hostname.as_str(), defaults.api_url.as_str()),
        ("", "")
    );
    assert_eq!(defaults.tls_port, 443);
    assert!(!defaults.tls_enabled());
    // With the certificate files, the pair is checked end to end (tests/tests/portal_tls.rs).
    let set = load_toml(
        "[portal]\nhostname = \"portal.example.net\"\n\
         api_url = \"https://portal.example.net/api/captive\"\ntls_port = 8443",
        &[],
    )?;
    assert_eq!(set.portal.hostname, "portal.example.net");
    assert_eq!(set.portal.tls_port, 8443);
    assert_eq!(
        error_for("[portal]\nhostname = \"https://portal.example.net\"", &[])?,
        "config.toml: portal.hostname must be empty or a DNS name like portal.example.net: \
         letters, digits, '-' and '.', no scheme or port, at most 253 characters \
         (got \"https://portal.example.net\")"
    );
    for bad in [
        "portal.example.net:443",
        "-portal.example",
        "192.0.2.1",
        "a..b",
    ] {
        let message = error_for(&format!("[portal]\nhostname = \"{bad}\""), &[])?;
        assert!(message.contains("portal.hostname"), "{bad}: {message}");
    }
    assert_eq!(
        error_for("[portal]\napi_url = \"http://portal/\\\"x\\\"\"", &[])?,
        "config.toml: portal.api_url must be empty or an http:// or https:// address without \
         spaces, quotes or backslashes (got \"http://portal/\\\"x\\\"\")"
    );
    let long = format!("https://portal.example.net/{}", "a".repeat(240));
    let message = error_for(&format!("[portal]\napi_url = \"{long}\""), &[])?;
    assert!(
        message.contains("at most 255 bytes, all DHCPv4 option 114 carries (got 267 bytes)"),
        "{message}"
    );
    Ok(())
}

#[test]
fn a_trial_is_off_by_default_and_its_keys_are_checked() -> TestResult {
    let config = Config::default();
    assert_eq!(
        (config.portal.trial_secs, config.portal.trial_reset_secs),
        (0, 86_400)
    );
    let on = load_toml(
        "[portal]\ntrial_secs = 300\ntrial_down_mbits = 1\ntrial_up_mbits = 1",
        &[],
    )?;
    assert_eq!(on.portal.trial_secs, 300);
    let global = load_toml("[portal]\ntrial_secs = 300", &[])?;
    assert!(
        crate::trials::plan(&global.portal, chrono::Utc::now())
            .is_some_and(|plan| plan.use_global_speed)
    );
    assert_eq!(
        error_for("[portal]\ntrial_secs = 300\ntrial_down_mbits = 1", &[])?,
        "config.toml: portal.trial_up_mbits and portal.trial_down_mbits must both be 0 \
         (a trial at the global speed) or both be set (got 1 down, 0 up)"
    );
    assert_eq!(
        error_for("[portal]\ntrial_secs = 7200\ntrial_reset_secs = 3600", &[])?,
        "config.toml: portal.trial_reset_secs must be at least portal.trial_secs (7200): a \
         device would get its next free trial before the last one ended (got 3600)"
    );
    for (toml, key) in [
        ("trial_secs = 86401", "portal.trial_secs"),
        ("trial_secs = -1", "portal.trial_secs"),
        ("trial_reset_secs = 59", "portal.trial_reset_secs"),
        ("trial_down_mbits = 2147483648", "portal.trial_down_mbits"),
    ] {
        let error = error_for(&format!("[portal]\n{toml}"), &[])?;
        assert!(
            error.starts_with(&format!("config.toml: {key} must")),
            "{error}"
        );
    }
    let env = error_for("[portal]", &[("HOTSPOTD__PORTAL__TRIAL_RESET_SECS", "10")])?;
    assert!(env.contains("HOTSPOTD__PORTAL__TRIAL_RESET_SECS"), "{env}");
    Ok(())
}

#[test]
fn radius_servers_must_be_host_and_port_and_need_a_secret() -> TestResult {
    let config = load_toml(
        "[radius]\nauth_server = \"192.0.2.10:1812\"\nauth_servers = [\"radius2.example.net:1812\"]\nsecret = \"s\"",
        &[],
    )?;
    assert_eq!(
        config.radius.auth_servers(),
        ["192.0.2.10:1812", "radius2.example.net:1812"]
    );
    assert_eq!(
        config.radius.acct_servers(),
        ["192.0.2.10:1813", "radius2.example.net:1813"],
        "accounting goes to the auth servers' hosts at 1813 unless set"
    );
    assert!(!Config::default().radius.enabled(), "off by default");
    assert!(
        error_for(
            "[radius]\nauth_server = \"192.0.2.10\"\nsecret = \"s\"",
            &[]
        )?
        .contains("radius.auth_server must be host:port")
    );
    assert!(
        error_for("[radius]\nauth_server = \"192.0.2.10:1812\"", &[])?
            .contains("radius.secret must be set")
    );
    assert!(
        error_for(
            "[radius]\nauth_servers = [\"192.0.2.10:1812\"]\nsecret = \"s\"",
            &[]
        )?
        .contains("set radius.auth_server")
    );
    assert!(
        error_for("[radius]\nauth_servers = [1812]", &[])?
            .contains("radius.auth_servers must be a list of strings")
    );
    assert!(
        error_for("[radius]\ntimeout_ms = 5", &[])?
            .contains("radius.timeout_ms must be between 100 and 60000")
    );
    Ok(())
}
