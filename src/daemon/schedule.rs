//! When a tenant runs next, and what time it is. The scheduler reads the time only from a
//! [`Clock`] it is given and computes the next run with the pure [`next_due`], so tests drive a
//! tenant task through hours of schedule under paused tokio time, with nothing sleeping for
//! real.

use std::time::Duration;

use chrono::{DateTime, Utc};

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

/// The widest spread of tenants' start times over their schedule's interval.
pub const MAX_SPREAD: Duration = Duration::from_secs(15 * 60);

/// The tenant's stable offset from its schedule's fire times: derived from the tenant id (as
/// systemd's `FixedRandomDelay=` derives one from the unit name), spread evenly over the
/// schedule's interval (at most [`MAX_SPREAD`]), so thousands of tenants on one cron
/// expression start spread over the interval instead of in the same second, and each tenant
/// keeps the same offset across restarts and reloads.
pub fn offset_of(tenant: &str, schedule: &cron::Schedule, around: DateTime<Utc>) -> Duration {
    // The shortest gap, not the next one: an irregular schedule (`0,10 * * * * *`) would
    // otherwise give a tenant a different offset from one run to the next, and a larger
    // offset after a run could select the fire time just served again.
    let spread = shortest_gap(schedule, around).min(MAX_SPREAD);
    if spread.is_zero() {
        return Duration::ZERO;
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = tenant
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    Duration::from_millis(hash % spread.as_millis().max(1) as u64)
}

/// The shortest gap between the schedule's next 32 fire times after `around`; zero when it
/// fires at most once more.
fn shortest_gap(schedule: &cron::Schedule, around: DateTime<Utc>) -> Duration {
    let fires: Vec<DateTime<Utc>> = schedule.after(&around).take(32).collect();
    fires
        .windows(2)
        .filter_map(|pair| (pair[1] - pair[0]).to_std().ok())
        .min()
        .unwrap_or_default()
}

/// The gap between the schedule's next two fire times after `around`; zero when it fires at
/// most once more.
pub fn interval_of(schedule: &cron::Schedule, around: DateTime<Utc>) -> Duration {
    let mut upcoming = schedule.after(&around);
    match (upcoming.next(), upcoming.next()) {
        (Some(first), Some(second)) => (second - first).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// The tenant's next scheduled run after `after`: the first fire time whose run (fire time +
/// `offset`) is later than `after`. `None` when the schedule never fires again.
///
/// `after` is the last run served (or when the task started): a task that recomputes its next
/// run — a reload, a force sync — with the same `after` gets the same answer, so no due run
/// is skipped.
pub fn next_due(
    schedule: &cron::Schedule,
    after: DateTime<Utc>,
    offset: Duration,
) -> Option<DateTime<Utc>> {
    let offset = chrono::Duration::from_std(offset).unwrap_or(chrono::Duration::zero());
    let fire = schedule.after(&(after - offset)).next()?;
    Some(fire + offset)
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
    fn the_next_run_is_the_next_fire_time_plus_the_tenants_offset() {
        let every_15_minutes = cron::Schedule::from_str("0 */15 * * * *").unwrap();
        let from = at("2026-12-02T10:07:00Z");
        assert_eq!(
            next_due(&every_15_minutes, from, Duration::ZERO),
            Some(at("2026-12-02T10:15:00Z"))
        );
        let offset = Duration::from_secs(10 * 60);
        assert_eq!(
            next_due(&every_15_minutes, from, offset),
            Some(at("2026-12-02T10:10:00Z")),
            "the 10:00 fire time's run, at 10:10, is still ahead"
        );
        assert_eq!(
            next_due(&every_15_minutes, at("2026-12-02T10:10:00Z"), offset),
            Some(at("2026-12-02T10:25:00Z")),
            "once served, the next one"
        );
    }

    #[test]
    fn offsets_are_stable_and_spread_over_the_interval() {
        let every_30_seconds = cron::Schedule::from_str("*/30 * * * * *").unwrap();
        let now = at("2026-12-02T10:00:00Z");
        let offsets: Vec<Duration> = (0..3000)
            .map(|i| offset_of(&format!("t{i:05}"), &every_30_seconds, now))
            .collect();
        assert_eq!(offsets[7], offset_of("t00007", &every_30_seconds, now));
        assert!(offsets.iter().all(|o| *o < Duration::from_secs(30)));
        // Each second of the interval gets its share (100 on average), none a burst.
        let mut per_second = [0usize; 30];
        for offset in &offsets {
            per_second[offset.as_secs() as usize] += 1;
        }
        assert!(
            per_second.iter().all(|n| (50..=150).contains(n)),
            "{per_second:?}"
        );
        // A daily schedule spreads over at most 15 minutes.
        let daily = cron::Schedule::from_str("0 0 2 * * *").unwrap();
        assert!(offset_of("acme", &daily, now) < MAX_SPREAD);
    }

    #[test]
    fn an_irregular_schedule_keeps_one_offset_and_serves_each_fire_time_once() {
        let irregular = cron::Schedule::from_str("0,10 * * * * *").unwrap();
        let offsets: Vec<Duration> = (0..60)
            .map(|s| {
                offset_of(
                    "acme",
                    &irregular,
                    at("2026-12-02T10:00:00Z") + chrono::Duration::seconds(s),
                )
            })
            .collect();
        assert!(offsets
            .iter()
            .all(|o| *o == offsets[0] && *o < Duration::from_secs(10)));
        // Served one after another, each fire time once.
        let mut served = at("2026-12-02T10:00:00Z");
        let mut runs = Vec::new();
        for _ in 0..6 {
            let offset = offset_of("acme", &irregular, served);
            served = next_due(&irregular, served, offset).unwrap();
            runs.push(served - chrono::Duration::from_std(offset).unwrap());
        }
        let fires: Vec<_> = irregular
            .after(&at("2026-12-02T09:59:59Z"))
            .take(7)
            .collect();
        assert!(runs.windows(2).all(|w| w[0] < w[1]), "{runs:?}");
        assert!(runs.iter().all(|run| fires.contains(run)), "{runs:?}");
    }

    #[test]
    fn a_schedule_that_never_fires_again_has_no_next_run() {
        let past = cron::Schedule::from_str("0 0 0 1 1 * 2020").unwrap();
        assert_eq!(
            next_due(&past, at("2026-12-02T10:00:00Z"), Duration::ZERO),
            None
        );
        assert_eq!(
            offset_of("acme", &past, at("2026-12-02T10:00:00Z")),
            Duration::ZERO
        );
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
