//! Price tables: per model (exact name or `prefix*`), the ratios of the
//! one-api/new-api model, or a fixed price per call.

use super::{Result, Store, StoreError, accounts::found, now_ms};
use crate::config::model_matches;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

/// One model's prices. Ratios are stored in millionths and shown as
/// decimals (6 places): a prompt token costs `model_ratio` units, a
/// completion token that times `completion_ratio`, a cached prompt token
/// that times `cached_ratio`, a prompt token written to the cache that
/// times `cache_write_ratio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Price {
    /// An exact model name, or a prefix ending in `*` (the admin API takes
    /// it from the path).
    #[serde(default)]
    pub model: String,
    #[serde(with = "ratio")]
    #[schema(value_type = f64)]
    pub model_ratio: i64,
    #[serde(with = "ratio", default = "ratio::one")]
    #[schema(value_type = f64)]
    pub completion_ratio: i64,
    #[serde(with = "ratio", default = "ratio::one")]
    #[schema(value_type = f64)]
    pub cached_ratio: i64,
    #[serde(with = "ratio", default = "ratio::one")]
    #[schema(value_type = f64)]
    pub cache_write_ratio: i64,
    /// When set, every call costs this many units, whatever its tokens.
    #[serde(default)]
    pub per_call: Option<i64>,
}

impl Price {
    fn check(&self) -> Result<()> {
        let ratios = [
            self.model_ratio,
            self.completion_ratio,
            self.cached_ratio,
            self.cache_write_ratio,
        ];
        if self.model.is_empty() {
            return Err(StoreError::Invalid("a price needs a model".into()));
        }
        if ratios.iter().any(|r| *r < 0) || self.per_call.is_some_and(|p| p < 0) {
            return Err(StoreError::Invalid(format!(
                "prices of {:?} cannot be negative",
                self.model
            )));
        }
        Ok(())
    }
}

/// The price that applies to `model`: an exact entry, else the longest
/// matching prefix.
pub fn price_for<'p>(prices: &'p [Price], model: &str) -> Option<&'p Price> {
    prices
        .iter()
        .filter(|p| model_matches(&p.model, model))
        .max_by_key(|p| match p.model.strip_suffix('*') {
            Some(prefix) => prefix.len(),
            None => usize::MAX,
        })
}

impl Store {
    pub async fn put_price(&self, price: &Price) -> Result<()> {
        price.check()?;
        sqlx::query(
            "INSERT INTO prices (model, model_ratio, completion_ratio, cached_ratio,
             cache_write_ratio, per_call, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (model) DO UPDATE SET model_ratio = excluded.model_ratio,
             completion_ratio = excluded.completion_ratio, cached_ratio = excluded.cached_ratio,
             cache_write_ratio = excluded.cache_write_ratio, per_call = excluded.per_call",
        )
        .bind(&price.model)
        .bind(price.model_ratio)
        .bind(price.completion_ratio)
        .bind(price.cached_ratio)
        .bind(price.cache_write_ratio)
        .bind(price.per_call)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_price(&self, model: &str) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM prices WHERE model = $1")
            .bind(model)
            .execute(self.pool())
            .await?;
        found(deleted.rows_affected(), || format!("price of {model:?}"))
    }

    pub async fn prices(&self) -> Result<Vec<Price>> {
        let rows = sqlx::query(
            "SELECT model, model_ratio, completion_ratio, cached_ratio, cache_write_ratio, per_call
             FROM prices ORDER BY model",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| Price {
                model: row.get(0),
                model_ratio: row.get(1),
                completion_ratio: row.get(2),
                cached_ratio: row.get(3),
                cache_write_ratio: row.get(4),
                per_call: row.get(5),
            })
            .collect())
    }
}

/// Ratios as decimals on the wire, millionths in the database: `0.75` is
/// stored as `750000`. More than six decimals round to the nearest
/// millionth.
pub mod ratio {
    use serde::{Deserialize, Deserializer, Serializer};

    pub const ONE: i64 = 1_000_000;

    pub fn one() -> i64 {
        ONE
    }

    pub fn serialize<S: Serializer>(millionths: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(*millionths as f64 / ONE as f64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let value = f64::deserialize(deserializer)?;
        if !value.is_finite() || !(0.0..=1e12).contains(&value) {
            return Err(serde::de::Error::custom(
                "a ratio must be a number from 0 to 1e12",
            ));
        }
        Ok((value * ONE as f64).round() as i64)
    }

    pub fn parse(value: f64) -> i64 {
        (value * ONE as f64).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(model: &str) -> Price {
        Price {
            model: model.into(),
            model_ratio: ratio::ONE,
            completion_ratio: ratio::ONE,
            cached_ratio: ratio::ONE,
            cache_write_ratio: ratio::ONE,
            per_call: None,
        }
    }

    #[test]
    fn exact_names_beat_prefixes_and_longer_prefixes_beat_shorter() {
        let prices = [
            price("*"),
            price("gpt-4o*"),
            price("gpt-4o-mini"),
            price("gpt-*"),
        ];
        assert_eq!(
            price_for(&prices, "gpt-4o-mini").unwrap().model,
            "gpt-4o-mini"
        );
        assert_eq!(price_for(&prices, "gpt-4o-2024").unwrap().model, "gpt-4o*");
        assert_eq!(price_for(&prices, "gpt-3").unwrap().model, "gpt-*");
        assert_eq!(price_for(&prices, "claude").unwrap().model, "*");
        assert!(price_for(&prices[1..], "claude").is_none());
    }

    #[test]
    fn ratios_are_decimals_outside_and_millionths_inside() {
        let parsed: Price =
            serde_json::from_str(r#"{"model":"m","model_ratio":0.075,"completion_ratio":4}"#)
                .unwrap();
        assert_eq!(parsed.model_ratio, 75_000);
        assert_eq!(parsed.completion_ratio, 4_000_000);
        assert_eq!(parsed.cached_ratio, ratio::ONE);
        let shown = serde_json::to_value(&parsed).unwrap();
        assert_eq!(shown["model_ratio"], 0.075);
        assert!(serde_json::from_str::<Price>(r#"{"model":"m","model_ratio":-1}"#).is_err());
    }
}
