//! The call log: one row per settled call, and the queries the admin API
//! asks of it (filtered pages, usage statistics).

use super::{Result, Store, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::{Any, AnyRow};
use utoipa::{IntoParams, ToSchema};

/// A settled call, as the call log keeps it.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CallRecord {
    pub request_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub key_id: String,
    pub channel: Option<String>,
    pub model: String,
    /// The client's protocol.
    pub protocol: String,
    pub stream: bool,
    /// The HTTP status the client got (0 if it never got one).
    pub status: u16,
    /// How the call ended: `complete`, `client_gone`, `upstream_error`,
    /// `timeout`, `plugin_fault`, `refused` or `interrupted`.
    pub ending: String,
    pub error: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    /// `upstream` (the provider's report), `estimated` (counted by Sluice)
    /// or `none` (nothing to count: the call was not charged).
    pub usage_source: String,
    /// What pricing said the call costs the caller's user.
    pub priced: i64,
    /// What the operator's pricing says it costs the caller's tenant: the
    /// same as `priced` unless the tenant prices with a plugin of its own.
    pub operator_priced: i64,
    /// The pricing plugin version behind `priced`: `name@version#hash`.
    pub pricing_plugin: String,
    /// What the router and pricing were given (JSON), for dry runs; not
    /// listed.
    #[serde(skip)]
    pub replay: String,
    /// What was taken from the balance for this call: `priced`, or less if
    /// the balance ran out.
    pub charge: i64,
    /// The pre-deduction taken at admission.
    pub held: i64,
    pub latency_ms: i64,
    /// Time to the first byte of the answer.
    pub ttft_ms: Option<i64>,
    pub created_at: i64,
}

/// Writes call-log rows: each record with what was held and charged.
pub(super) async fn insert_calls(
    connection: &mut sqlx::AnyConnection,
    rows: &[(&CallRecord, i64, i64)],
) -> Result<()> {
    const COLUMNS: usize = 26;
    let values: Vec<String> = (0..rows.len())
        .map(|row| {
            format!(
                "({})",
                super::ledger::placeholders(connection, row * COLUMNS + 1, COLUMNS)
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO call_logs (request_id, tenant_id, user_id, key_id, channel, model, protocol,
         stream, status, ending, error, prompt_tokens, completion_tokens, cached_tokens,
         cache_write_tokens, reasoning_tokens, usage_source, charge, priced, held, latency_ms,
         ttft_ms, created_at, operator_priced, pricing_plugin, replay) VALUES {}",
        values.join(", ")
    );
    let now = now_ms();
    let mut query = sqlx::query(&sql).persistent(false);
    for (record, held, charge) in rows {
        let created_at = if record.created_at == 0 {
            now
        } else {
            record.created_at
        };
        query = query
            .bind(&record.request_id)
            .bind(&record.tenant_id)
            .bind(&record.user_id)
            .bind(&record.key_id)
            .bind(record.channel.as_deref())
            .bind(&record.model)
            .bind(&record.protocol)
            .bind(i64::from(record.stream))
            .bind(i64::from(record.status))
            .bind(&record.ending)
            .bind(record.error.as_deref())
            .bind(record.prompt_tokens)
            .bind(record.completion_tokens)
            .bind(record.cached_tokens)
            .bind(record.cache_write_tokens)
            .bind(record.reasoning_tokens)
            .bind(if record.usage_source.is_empty() {
                "none"
            } else {
                record.usage_source.as_str()
            })
            .bind(*charge)
            .bind(record.priced)
            .bind(*held)
            .bind(record.latency_ms)
            .bind(record.ttft_ms)
            .bind(created_at)
            .bind(record.operator_priced)
            .bind(&record.pricing_plugin)
            .bind(&record.replay);
    }
    query.execute(connection).await?;
    Ok(())
}

/// A call as a dry run replays it.
pub struct RecordedCall {
    pub request_id: String,
    pub replay: String,
    /// Whether the call was charged (its usage priced).
    pub charged: bool,
    /// Prompt, completion, cached, cache-write and reasoning tokens.
    pub tokens: [i64; 5],
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct CallFilter {
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub key_id: Option<String>,
    pub channel: Option<String>,
    pub model: Option<String>,
    pub ending: Option<String>,
    pub request_id: Option<String>,
    /// Calls at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Calls before this time (ms since the epoch).
    pub until: Option<i64>,
}

const FILTER: &str = "($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR user_id = $2)
    AND ($3 IS NULL OR key_id = $3) AND ($4 IS NULL OR channel = $4)
    AND ($5 IS NULL OR model = $5) AND ($6 IS NULL OR ending = $6)
    AND ($7 IS NULL OR request_id = $7) AND ($8 IS NULL OR created_at >= $8)
    AND ($9 IS NULL OR created_at < $9)";

fn bind_filter<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    filter: &'q CallFilter,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(filter.tenant_id.as_deref())
        .bind(filter.user_id.as_deref())
        .bind(filter.key_id.as_deref())
        .bind(filter.channel.as_deref())
        .bind(filter.model.as_deref())
        .bind(filter.ending.as_deref())
        .bind(filter.request_id.as_deref())
        .bind(filter.since)
        .bind(filter.until)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallPage {
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
    pub data: Vec<CallRecord>,
}

/// One line of usage statistics: the calls sharing one value of the
/// dimension asked for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageLine {
    /// The dimension's value: a day (`YYYY-MM-DD`, UTC), model, user, key
    /// or channel.
    pub key: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    /// Units charged.
    pub charge: i64,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Day,
    Model,
    User,
    Key,
    Channel,
    Tenant,
}

impl Dimension {
    /// The grouping expression, as text in both dialects.
    fn column(self) -> &'static str {
        match self {
            Dimension::Day => "CAST(created_at / 86400000 AS TEXT)",
            Dimension::Model => "model",
            Dimension::User => "user_id",
            Dimension::Key => "key_id",
            Dimension::Channel => "COALESCE(channel, '-')",
            Dimension::Tenant => "tenant_id",
        }
    }
}

impl Store {
    /// The newest `limit` calls (of `tenant`, when given) that recorded
    /// what their router and pricing were given: (request id, replay JSON,
    /// whether the call was charged, its usage).
    pub async fn recorded_calls(
        &self,
        tenant: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RecordedCall>> {
        let rows = sqlx::query(
            "SELECT request_id, replay, usage_source, prompt_tokens, completion_tokens, cached_tokens,
             cache_write_tokens, reasoning_tokens FROM call_logs
             WHERE replay <> '' AND ($1 IS NULL OR tenant_id = $1)
             ORDER BY created_at DESC, request_id DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| RecordedCall {
                request_id: row.get(0),
                replay: row.get(1),
                charged: row.get::<String, _>(2) != "none",
                tokens: [row.get(3), row.get(4), row.get(5), row.get(6), row.get(7)],
            })
            .collect())
    }

    /// A page of calls matching `filter`, newest first.
    pub async fn calls(&self, filter: &CallFilter, page: i64, page_size: i64) -> Result<CallPage> {
        let page = page.clamp(1, 1_000_000);
        let page_size = page_size.clamp(1, 1000);
        let count = format!("SELECT COUNT(*) FROM call_logs WHERE {FILTER}");
        let total: i64 = bind_filter(sqlx::query(&count), filter)
            .fetch_one(self.pool())
            .await?
            .get(0);
        let sql = format!(
            "SELECT request_id, tenant_id, user_id, key_id, channel, model, protocol, stream, status,
             ending, error, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
             reasoning_tokens, usage_source, charge, priced, held, latency_ms, ttft_ms, created_at,
             operator_priced, pricing_plugin
             FROM call_logs WHERE {FILTER} ORDER BY created_at DESC, request_id DESC
             LIMIT $10 OFFSET $11"
        );
        let rows = bind_filter(sqlx::query(&sql), filter)
            .bind(page_size)
            .bind((page - 1) * page_size)
            .fetch_all(self.pool())
            .await?;
        Ok(CallPage {
            total,
            page,
            page_size,
            data: rows.iter().map(call_of).collect(),
        })
    }

    /// Calls matching `filter`, summed per value of `by`.
    pub async fn usage(&self, filter: &CallFilter, by: Dimension) -> Result<Vec<UsageLine>> {
        let column = by.column();
        let sum = |c: &str| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)");
        let sql = format!(
            "SELECT {column} AS k, COUNT(*), {}, {}, {}, {}, {}, {} FROM call_logs
             WHERE {FILTER} GROUP BY k ORDER BY k",
            sum("prompt_tokens"),
            sum("completion_tokens"),
            sum("cached_tokens"),
            sum("cache_write_tokens"),
            sum("reasoning_tokens"),
            sum("charge"),
        );
        let rows = bind_filter(sqlx::query(&sql), filter)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let key: String = row.get(0);
                UsageLine {
                    key: match by {
                        Dimension::Day => key.parse().map_or(key, day_of),
                        _ => key,
                    },
                    requests: row.get(1),
                    prompt_tokens: row.get(2),
                    completion_tokens: row.get(3),
                    cached_tokens: row.get(4),
                    cache_write_tokens: row.get(5),
                    reasoning_tokens: row.get(6),
                    charge: row.get(7),
                }
            })
            .collect())
    }
}

fn call_of(row: &AnyRow) -> CallRecord {
    CallRecord {
        request_id: row.get(0),
        tenant_id: row.get(1),
        user_id: row.get(2),
        key_id: row.get(3),
        channel: row.get(4),
        model: row.get(5),
        protocol: row.get(6),
        stream: row.get::<i64, _>(7) != 0,
        status: u16::try_from(row.get::<i64, _>(8)).unwrap_or(0),
        ending: row.get(9),
        error: row.get(10),
        prompt_tokens: row.get(11),
        completion_tokens: row.get(12),
        cached_tokens: row.get(13),
        cache_write_tokens: row.get(14),
        reasoning_tokens: row.get(15),
        usage_source: row.get(16),
        charge: row.get(17),
        priced: row.get(18),
        held: row.get(19),
        latency_ms: row.get(20),
        ttft_ms: row.get(21),
        created_at: row.get(22),
        operator_priced: row.get(23),
        pricing_plugin: row.get(24),
        replay: String::new(),
    }
}

/// Days since the epoch as a UTC calendar date (Howard Hinnant's
/// civil-from-days).
fn day_of(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_become_dates() {
        assert_eq!(super::day_of(0), "1970-01-01");
        assert_eq!(super::day_of(20_517), "2026-03-05");
        assert_eq!(super::day_of(11_016), "2000-02-29");
    }
}
