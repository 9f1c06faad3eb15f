//! How `hotspotctl` shows vouchers: the table, and the exports made when they are created (the
//! only time their codes are known): CSV, and an HTML page of cards to print (A4, 3 × 8 a
//! page). Side effects: [`write_private`] writes a file.

use std::{fmt::Write as _, io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path};

use hotspotd::{client::ClientError, control::VoucherView, sessions::SessionData};

/// Cards a printed page holds: 3 across, 8 down.
const CARDS_PER_PAGE: usize = 24;

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

/// A plan in a few words: "1 h 30 min, 500 MB, 10/2 Mbit/s, 30 days".
pub fn plan(plan: &SessionData) -> String {
    let mut parts = Vec::new();
    if plan.kind.counts_time() {
        let (hours, minutes, seconds) = (
            plan.time_secs / 3600,
            plan.time_secs % 3600 / 60,
            plan.time_secs % 60,
        );
        let mut time = Vec::new();
        if hours > 0 {
            time.push(format!("{hours} h"));
        }
        if minutes > 0 {
            time.push(format!("{minutes} min"));
        }
        if seconds > 0 {
            time.push(format!("{seconds} s"));
        }
        parts.push(time.join(" "));
    }
    if plan.kind.counts_data() {
        parts.push(format!("{} MB", plan.data_mb));
    }
    parts.push(if plan.use_global_speed {
        "standard speed".to_owned()
    } else {
        format!("{}/{} Mbit/s", plan.down_mbits, plan.up_mbits)
    });
    if let Some(days) = plan.exp_days {
        parts.push(format!("valid {days} days after first use"));
    }
    parts.join(", ")
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

/// A self-contained HTML page of cards, each with its code (in groups of four for reading)
/// and its plan; the browser prints it on A4, 3 × 8 cards a page.
pub fn cards(vouchers: &[VoucherView]) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Vouchers</title>\n<style>\n\
         @page { size: A4; margin: 10mm; }\n\
         body { margin: 0; font-family: sans-serif; }\n\
         .page { display: grid; grid-template-columns: repeat(3, 1fr); grid-template-rows: repeat(8, 34.6mm); width: 190mm; page-break-after: always; }\n\
         .card { border: 1px dashed #888; padding: 3mm; box-sizing: border-box; overflow: hidden; }\n\
         .code { font: bold 15pt monospace; letter-spacing: 1px; margin: 2mm 0; }\n\
         .plan, .until { font-size: 8pt; }\n\
         </style></head><body>\n",
    );
    for page in vouchers.chunks(CARDS_PER_PAGE) {
        out.push_str("<div class=\"page\">\n");
        for voucher in page {
            let code = voucher.code.as_deref().unwrap_or_default();
            let grouped: Vec<String> = code
                .as_bytes()
                .chunks(4)
                .map(|group| String::from_utf8_lossy(group).into_owned())
                .collect();
            let _ = writeln!(
                out,
                "<div class=\"card\"><div>WiFi voucher</div><div class=\"code\">{}</div><div class=\"plan\">{}</div>{}</div>",
                escape(&grouped.join("-")),
                escape(&plan(&voucher.plan)),
                voucher
                    .valid_until
                    .map_or_else(String::new, |until| format!(
                        "<div class=\"until\">Use before {}</div>",
                        until.format("%Y-%m-%d")
                    )),
            );
        }
        out.push_str("</div>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
    fn cards_fill_a4_pages_of_24_with_code_and_plan() {
        let vouchers: Vec<_> = (1..=25).map(created).collect();
        let page = cards(&vouchers);
        assert_eq!(page.matches("<div class=\"page\">").count(), 2);
        assert_eq!(page.matches("<div class=\"card\">").count(), 25);
        assert!(
            page.contains("size: A4")
                && page.contains("repeat(3, 1fr)")
                && page.contains("repeat(8,")
        );
        assert!(page.contains("ABCD-2222-22"), "the code in groups of four");
        assert!(page.contains("1 h 30 min, 500 MB, 10/2 Mbit/s, valid 30 days after first use"));
        assert!(page.contains("Use before 2027-01-15"));
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
