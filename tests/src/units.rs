//! Reading what `systemd-analyze verify` says of hotspotd's unit. A box has other units, and
//! verify loads their files too (Debian's freeradius.service warns about `MemoryLimit=`), so
//! the tests judge only the lines about hotspotd's own.

/// Whether a line of `systemd-analyze verify` is about a unit other than hotspotd's: it starts
/// with another unit's name or file (`/lib/systemd/system/freeradius.service:23: …`).
#[must_use]
pub fn about_another_unit(line: &str) -> bool {
    let Some((subject, _)) = line.split_once(": ") else {
        return false;
    };
    let subject = subject.split(':').next().unwrap_or(subject);
    let name = subject.rsplit('/').next().unwrap_or(subject);
    let is_unit = [
        ".service", ".socket", ".target", ".timer", ".mount", ".slice", ".path",
    ]
    .iter()
    .any(|kind| name.ends_with(kind));
    is_unit && name != "hotspotd.service"
}

/// What `systemd-analyze verify` said (`stdout` and `stderr`) about hotspotd's unit: its lines
/// less those about other units.
#[must_use]
pub fn said_of_hotspotd(stdout: &[u8], stderr: &[u8]) -> Vec<String> {
    let stderr = String::from_utf8_lossy(stderr);
    let stdout = String::from_utf8_lossy(stdout);
    stderr
        .lines()
        .chain(stdout.lines())
        .filter(|line| !line.trim().is_empty() && !about_another_unit(line))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::about_another_unit;

    #[test]
    fn only_hotspotds_own_unit_is_judged() {
        assert!(about_another_unit(
            "/lib/systemd/system/freeradius.service:23: Unit uses MemoryLimit=; please use MemoryMax= instead."
        ));
        assert!(about_another_unit("dbus.socket: something"));
        assert!(!about_another_unit(
            "hotspotd.service: Command /usr/bin/hotspotd is not executable: No such file or directory"
        ));
        assert!(!about_another_unit(
            "/lib/systemd/system/hotspotd.service:12: Unknown key name 'Foo' in section 'Service', ignoring."
        ));
        assert!(!about_another_unit("Failed to load something"));
    }
}
