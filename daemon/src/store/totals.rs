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
