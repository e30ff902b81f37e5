//! When a tenant runs next, and what time it is. The scheduler reads the time only from a
//! [`Clock`] it is given and computes the next run with the pure [`next_due`], so tests drive a
//! tenant task through hours of schedule under paused tokio time, with nothing sleeping for
//! real.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// Where the scheduler gets the time.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The wall clock: cron schedules are wall-clock times.
    System,
    /// Wall time that advances with tokio's clock from `at` (set when tokio read `since`), so
    /// pausing and advancing tokio time moves it too.
    Tokio {
        at: DateTime<Utc>,
        since: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `at` now and follows tokio's (possibly paused) time from here on.
    pub fn following_tokio(at: DateTime<Utc>) -> Self {
        Clock::Tokio {
            at,
            since: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { at, since } => {
                *at + chrono::Duration::from_std(since.elapsed())
                    .unwrap_or(chrono::Duration::zero())
            }
        }
    }

    /// How long from now until `at` (zero when it has passed).
    pub fn until(&self, at: DateTime<Utc>) -> Duration {
        (at - self.now()).to_std().unwrap_or_default()
    }
}

/// The first fire time of `schedule` after `from`, delayed by `jitter` (in `[0, 1]`) of a
/// tenth of the schedule's interval, at most 30 s: tenants on one schedule then do not all
/// start in the same instant. `None` when the schedule never fires again.
pub fn next_due(
    schedule: &cron::Schedule,
    from: DateTime<Utc>,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    let mut upcoming = schedule.after(&from);
    let first = upcoming.next()?;
    let jitter_cap = upcoming
        .next()
        .and_then(|second| (second - first).to_std().ok())
        .map(|gap| (gap / 10).min(Duration::from_secs(30)))
        .unwrap_or_default();
    let jitter_ms = (jitter_cap.as_millis() as f64 * jitter.clamp(0.0, 1.0)) as i64;
    Some(first + chrono::Duration::milliseconds(jitter_ms))
}

/// A fresh jitter for [`next_due`].
pub fn random_jitter() -> f64 {
    rand::rng().random_range(0.0..=1.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::str::FromStr;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_next_run_is_the_next_fire_time_plus_jitter_of_a_tenth_of_the_interval() {
        let every_15_minutes = cron::Schedule::from_str("0 */15 * * * *").unwrap();
        let from = at("2026-12-02T10:07:00Z");
        assert_eq!(
            next_due(&every_15_minutes, from, 0.0),
            Some(at("2026-12-02T10:15:00Z"))
        );
        // A tenth of 15 minutes is 90 s, capped at 30 s.
        assert_eq!(
            next_due(&every_15_minutes, from, 1.0),
            Some(at("2026-12-02T10:15:30Z"))
        );
        let every_10_seconds = cron::Schedule::from_str("*/10 * * * * *").unwrap();
        assert_eq!(
            next_due(&every_10_seconds, at("2026-12-02T10:00:00Z"), 0.5),
            Some(at("2026-12-02T10:00:10.500Z"))
        );
    }

    #[test]
    fn a_schedule_that_never_fires_again_has_no_next_run() {
        let past = cron::Schedule::from_str("0 0 0 1 1 * 2020").unwrap();
        assert_eq!(next_due(&past, at("2026-12-02T10:00:00Z"), 0.5), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time() {
        let clock = Clock::following_tokio(at("2026-12-02T10:00:00Z"));
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), at("2026-12-02T10:01:30Z"));
        assert_eq!(
            clock.until(at("2026-12-02T10:02:00Z")),
            Duration::from_secs(30)
        );
        assert_eq!(clock.until(at("2026-12-02T09:00:00Z")), Duration::ZERO);
    }
}
