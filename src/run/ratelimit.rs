//! Client-side rate limits: one token bucket per product, shared by every
//! step and fan-out item of a run, so a big fan-out stays under the API's QPS
//! instead of living on `Throttling` answers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Token buckets by product. A product without a bucket is not limited.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: BTreeMap<String, Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimits {
    /// Limits from `(product, calls per second)`; a rate of 0 means unlimited.
    pub fn new(limits: impl IntoIterator<Item = (String, f64)>) -> RateLimits {
        let now = Instant::now();
        let buckets = limits
            .into_iter()
            .filter(|(_, rate)| *rate > 0.0)
            .map(|(product, rate)| {
                // A burst of one second's worth lets a fan-out start at once
                // without exceeding the rate over any second.
                let burst = rate.max(1.0);
                (
                    product.to_ascii_lowercase(),
                    Mutex::new(Bucket {
                        rate,
                        burst,
                        tokens: burst,
                        last: now,
                    }),
                )
            })
            .collect();
        RateLimits { buckets }
    }

    /// Waits until a call to `product` may be sent.
    pub async fn acquire(&self, product: &str) {
        let Some(bucket) = self.buckets.get(&product.to_ascii_lowercase()) else {
            return;
        };
        loop {
            let wait = {
                let Ok(mut b) = bucket.lock() else { return };
                let now = Instant::now();
                let elapsed = now.duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * b.rate).min(b.burst);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::try_from_secs_f64((1.0 - b.tokens) / b.rate)
                    .unwrap_or(Duration::from_secs(1))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Parses `PRODUCT=N` (calls per second; 0 = unlimited).
pub fn parse_limit(value: &str) -> Result<(String, f64), String> {
    let (product, rate) = value.split_once('=').ok_or_else(|| {
        format!(
            "invalid rate limit `{value}`: expected PRODUCT=CALLS_PER_SECOND, e.g. dataworks=20"
        )
    })?;
    if product.trim().is_empty() {
        return Err(format!(
            "invalid rate limit `{value}`: the product is missing, e.g. dataworks=20"
        ));
    }
    let rate: f64 = rate
        .trim()
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && (*r == 0.0 || (MIN_RATE..=MAX_RATE).contains(r)))
        .ok_or_else(|| {
            format!("invalid rate limit `{value}`: `{rate}` must be 0 (unlimited) or between {MIN_RATE} and {MAX_RATE} calls per second")
        })?;
    Ok((product.trim().to_ascii_lowercase(), rate))
}

/// Slowest limit accepted: one call every 1,000 s.
const MIN_RATE: f64 = 0.001;
/// Fastest limit accepted (above it, say 0: unlimited).
const MAX_RATE: f64 = 1_000_000.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_spaces_calls_after_the_burst() {
        let limits = RateLimits::new([("dts".to_owned(), 10.0)]);
        let start = Instant::now();
        for _ in 0..30 {
            limits.acquire("DTS").await;
        }
        // 10 from the burst, then 20 more at 10/s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1_900), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(2_100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_products_do_not_wait() {
        let limits = RateLimits::new([("dts".to_owned(), 0.0)]);
        let start = Instant::now();
        for _ in 0..1000 {
            limits.acquire("dts").await;
            limits.acquire("dataworks").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn parses_flags() {
        assert_eq!(
            parse_limit("DataWorks=20").unwrap(),
            ("dataworks".to_owned(), 20.0)
        );
        assert!(parse_limit("dts").is_err());
        assert!(parse_limit("dts=-1").is_err());
        assert!(parse_limit("dts=abc").is_err());
        assert!(parse_limit("dts=1e-300").is_err());
        assert!(parse_limit("=5").is_err());
        assert_eq!(parse_limit("dts=0").unwrap().1, 0.0);
    }
}
