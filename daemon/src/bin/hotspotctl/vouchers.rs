//! How `hotspotctl` shows vouchers: the table, and the exports made when they are created (the
//! only time their codes are known): CSV, and the page of cards to print
//! ([`hotspotd::voucher_sheet`], which the dashboard prints too). Side effects:
//! [`write_private`] writes a file.

use std::{fmt::Write as _, io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path};

pub use hotspotd::voucher_sheet::cards;
use hotspotd::voucher_sheet::plan;
use hotspotd::{client::ClientError, control::VoucherView};

pub fn table(vouchers: &[VoucherView]) {
    let rows: Vec<Vec<String>> = vouchers
        .iter()
        .map(|voucher| {
            vec![
                voucher.id.to_string(),
                // Only the answer that created it knows the code.
                voucher
                    .code
                    .clone()
                    .unwrap_or_else(|| "(not kept)".to_owned()),
                super::table::snake(&voucher.state),
                format!("{}/{}", voucher.devices, voucher.max_devices),
                plan(&voucher.plan),
                voucher
                    .valid_until
                    .map_or_else(|| "-".to_owned(), super::table::utc),
                voucher
                    .mac
                    .map_or_else(|| "-".to_owned(), |mac| mac.to_string()),
                voucher
                    .session_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            ]
        })
        .collect();
    super::table::print_table(
        &[
            "ID",
            "CODE",
            "STATE",
            "DEVICES",
            "PLAN",
            "VALID_UNTIL",
            "MAC",
            "SESSION",
        ],
        &rows,
        "(no vouchers)",
    );
}

/// The codes and their plans, one voucher a line, with a header.
pub fn csv(vouchers: &[VoucherView]) -> String {
    let mut out = String::from(
        "code,id,type,time_secs,data_mb,exp_days,down_mbits,up_mbits,use_global_speed,max_devices,valid_until\n",
    );
    for voucher in vouchers {
        let plan = &voucher.plan;
        // No field holds a comma or a quote: codes are letters and digits, the rest numbers.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{}",
            voucher.code.as_deref().unwrap_or_default(),
            voucher.id,
            plan.kind.name(),
            plan.time_secs,
            plan.data_mb,
            plan.exp_days
                .map(|days| days.to_string())
                .unwrap_or_default(),
            plan.down_mbits,
            plan.up_mbits,
            plan.use_global_speed,
            voucher.max_devices,
            voucher
                .valid_until
                .map(super::table::utc)
                .unwrap_or_default(),
        );
    }
    out
}

/// Writes `text` to a new file at `path` readable by its owner only: the codes are as good as
/// money. An existing file is replaced.
pub fn write_private(path: &Path, text: &str) -> Result<(), ClientError> {
    let export = |source| ClientError::Export {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(export)?;
    file.write_all(text.as_bytes()).map_err(export)
}

#[cfg(test)]
mod tests {
    use hotspotd::sessions::SessionData;

    use super::*;

    fn created(n: i64) -> VoucherView {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        VoucherView {
            id: n,
            code: Some(format!("ABCD{n:06}").replace(['0', '1'], "2")),
            state: hotspotd::vouchers::VoucherState::Unused,
            devices: 0,
            max_devices: 1,
            plan: SessionData {
                provider: "voucher".to_owned(),
                kind: hotspotd::sessions::SessionType::TimeOrData,
                time_secs: 5_400,
                data_mb: 500.0,
                time_cons: 0,
                data_cons: 0.0,
                started_at: None,
                exp_days: Some(30),
                down_mbits: 10,
                up_mbits: 2,
                use_global_speed: false,
                created_at: at,
            },
            valid_until: Some(at),
            mac: None,
            device_macs: Vec::new(),
            session_id: None,
            price: None,
            created_at: at,
            redeemed_at: None,
        }
    }

    #[test]
    fn the_csv_has_a_header_and_one_line_a_voucher() {
        let text = csv(&[created(7)]);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("code,id,type,"));
        assert_eq!(
            lines[1],
            "ABCD222227,7,time_or_data,5400,500,30,10,2,false,1,2027-01-15T08:00:00Z"
        );
    }
}
