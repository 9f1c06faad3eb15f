//! The whole box's traffic and sales per period, summed in SQLite: what the dashboard's charts
//! draw. One row a period, however many clients, so a chart of a week at 10,000 clients reads
//! 168 rows, not 1.7 million. Side effects: reads the session database.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    StoreError,
    schema::fail,
    usage::{History, Period, Price},
};

/// The traffic of every client in one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficTotal {
    pub start: DateTime<Utc>,
    pub up_bytes: u64,
    pub down_bytes: u64,
}

/// The sales of one day: how many, and their prices summed per currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SalesTotal {
    pub day: DateTime<Utc>,
    pub count: u64,
    pub totals: BTreeMap<String, Price>,
}

const DAY_SECS: i64 = 86_400;

impl History {
    /// Every client's traffic per period from `since` on, oldest first. Blocking.
    pub fn traffic_totals(
        &self,
        since: DateTime<Utc>,
        by: Period,
    ) -> Result<Vec<TrafficTotal>, StoreError> {
        let conn = self.open()?;
        let op = "sum the usage history";
        let source = match by {
            Period::Hour => "SELECT hour_start AS start, up_bytes, down_bytes FROM usage_hourly",
            Period::Day => {
                "SELECT day_start AS start, up_bytes, down_bytes FROM usage_daily
                UNION ALL
                SELECT hour_start - hour_start % 86400, up_bytes, down_bytes FROM usage_hourly"
            }
        };
        let mut statement = conn
            .prepare(&format!(
                "SELECT start, sum(up_bytes), sum(down_bytes) FROM ({source})
                WHERE start >= ?1 GROUP BY 1 ORDER BY 1"
            ))
            .map_err(fail(&self.path, op))?;
        let rows = statement
            .query_map([since.timestamp()], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(fail(&self.path, op))?;
        let mut totals = Vec::new();
        for row in rows {
            let (start, up, down) = row.map_err(fail(&self.path, op))?;
            let key = start.to_string();
            let count = |field, value: i64| {
                u64::try_from(value).map_err(|_| self.bad("usage", &key, field, value.to_string()))
            };
            totals.push(TrafficTotal {
                start: DateTime::from_timestamp(start, 0)
                    .ok_or_else(|| self.bad("usage", &key, "start", key.clone()))?,
                up_bytes: count("up_bytes", up)?,
                down_bytes: count("down_bytes", down)?,
            });
        }
        Ok(totals)
    }

    /// The sales per UTC day from `since` on, oldest first; days without a sale are left out.
    /// Blocking.
    pub fn sales_totals(&self, since: DateTime<Utc>) -> Result<Vec<SalesTotal>, StoreError> {
        let conn = self.open()?;
        let op = "sum the sales";
        let mut statement = conn
            .prepare(
                "SELECT sold_at_secs - sold_at_secs % 86400, currency, count(*),
                    sum(coalesce(price_milli, 0))
                FROM sales WHERE sold_at_secs >= ?1 GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .map_err(fail(&self.path, op))?;
        let rows = statement
            .query_map(
                [since.timestamp() - since.timestamp().rem_euclid(DAY_SECS)],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                },
            )
            .map_err(fail(&self.path, op))?;
        let mut days: Vec<SalesTotal> = Vec::new();
        for row in rows {
            let (day, currency, count, price) = row.map_err(fail(&self.path, op))?;
            let key = day.to_string();
            let day = DateTime::from_timestamp(day, 0)
                .ok_or_else(|| self.bad("sales", &key, "sold_at_secs", key.clone()))?;
            if days.last().is_none_or(|last| last.day != day) {
                days.push(SalesTotal {
                    day,
                    count: 0,
                    totals: BTreeMap::new(),
                });
            }
            if let Some(last) = days.last_mut() {
                last.count += u64::try_from(count).unwrap_or(0);
                if price != 0 {
                    last.totals.insert(currency, Price(price));
                }
            }
        }
        Ok(days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        SaveBatch, Store,
        tests::{connected, mac, meta, running},
        usage::{UsageBatch, UsageCounts, UsageKey},
    };

    /// 2027-01-15T00:00:00Z, a day's start.
    const DAY: i64 = 1_800_000_000 - 1_800_000_000 % DAY_SECS;
    const HOUR: i64 = 3_600;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid")
    }

    fn counts(up_bytes: u64, down_bytes: u64) -> UsageCounts {
        UsageCounts {
            up_bytes,
            down_bytes,
            connected_secs: 0,
        }
    }

    #[tokio::test]
    async fn totals_sum_every_client_per_period_and_sales_per_day() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        let mut sold = running(1);
        sold.created_at = at(DAY + 10);
        store
            .sell(
                mac(1),
                sold.clone(),
                Some("2.50".parse().expect("price")),
                "EUR",
            )
            .expect("sells");
        store
            .sell(mac(2), sold.clone(), None, "EUR")
            .expect("sells");
        let mut usage = UsageBatch::default();
        for (hour, n, up, down) in [(0, 1, 10, 20), (0, 2, 1, 2), (1, 1, 100, 200)] {
            let key = UsageKey {
                hour_start_secs: DAY + hour * HOUR,
                mac: mac(n),
                session_id: None,
            };
            usage.add(key, counts(up, down));
        }
        store
            .save_batch(SaveBatch {
                ended: Vec::new(),
                sessions: Vec::new(),
                clients: vec![connected(1, None)],
                meta: meta(1),
                usage,
            })
            .expect("takes");
        store.sync().await.expect("saved");

        let history = store.history();
        let hours = history
            .traffic_totals(at(DAY), Period::Hour)
            .expect("reads");
        assert_eq!(
            hours,
            [
                TrafficTotal {
                    start: at(DAY),
                    up_bytes: 11,
                    down_bytes: 22
                },
                TrafficTotal {
                    start: at(DAY + HOUR),
                    up_bytes: 100,
                    down_bytes: 200
                },
            ]
        );
        let days = history.traffic_totals(at(DAY), Period::Day).expect("reads");
        assert_eq!(days.len(), 1);
        assert_eq!((days[0].up_bytes, days[0].down_bytes), (111, 222));
        // From a later hour on, the earlier one is left out.
        let later = history
            .traffic_totals(at(DAY + HOUR), Period::Hour)
            .expect("reads");
        assert_eq!(later.len(), 1);

        let sales = history.sales_totals(at(DAY)).expect("reads");
        assert_eq!(sales.len(), 1, "{sales:?}");
        assert_eq!(sales[0].day, at(DAY));
        assert_eq!(sales[0].count, 2);
        assert_eq!(sales[0].totals.get("EUR"), Some(&Price(2_500)));
        assert!(
            history
                .sales_totals(at(DAY + DAY_SECS))
                .expect("reads")
                .is_empty()
        );
    }
}
