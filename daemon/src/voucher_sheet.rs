//! The page of voucher cards to print: one self-contained HTML file (no outside resources),
//! A4, 3 × 8 cards a page, each with its code in groups of four and its plan in words.
//! `hotspotctl voucher create --print` writes it; the dashboard shows it after a batch.

use std::fmt::Write as _;

use crate::{control::VoucherView, sessions::SessionData};

/// Cards a printed page holds: 3 across, 8 down.
const CARDS_PER_PAGE: usize = 24;

/// A plan in a few words: "1 h 30 min, 500 MB, 10/2 Mbit/s, 30 days".
#[must_use]
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

/// A self-contained HTML page of cards, each with its code (in groups of four for reading)
/// and its plan; the browser prints it on A4, 3 × 8 cards a page.
#[must_use]
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

/// Text made safe for HTML, in content and in quoted attributes.
#[must_use]
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(n: i64) -> VoucherView {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        VoucherView {
            id: n,
            code: Some(format!("ABCD{n:06}").replace(['0', '1'], "2")),
            state: crate::vouchers::VoucherState::Unused,
            devices: 0,
            max_devices: 1,
            plan: SessionData {
                provider: "voucher".to_owned(),
                kind: crate::sessions::SessionType::TimeOrData,
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
}
