//! When the compactor's jobs run (spec §2.2): each level once at start-up, then at wall-clock
//! multiples of its interval (a 30 s level at :00 and :30); snapshots likewise; L0 retention
//! every `l0-retention-check-interval`. Pure: the caller passes the time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::activity::Activity;
use crate::config::Config;

/// The configuration the compactor follows (`levels`, `snapshot`, `l0-retention`,
/// `retention.enabled`; spec §1.5, §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Intervals of levels 1..=n.
    pub levels: Vec<Duration>,
    pub snapshot_interval: Duration,
    pub snapshot_retention: Duration,
    pub l0_retention: Duration,
    pub l0_retention_check_interval: Duration,
    pub retention_enabled: bool,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            levels: c.levels.clone(),
            snapshot_interval: c.snapshot_interval,
            snapshot_retention: c.snapshot_retention,
            l0_retention: c.l0_retention,
            l0_retention_check_interval: c.l0_retention_check_interval,
            retention_enabled: c.retention_enabled,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(&Config::default())
    }
}

/// The first wall-clock multiple of `interval` (counted from the Unix epoch) after `now`.
pub fn next_boundary(now: SystemTime, interval: Duration) -> SystemTime {
    let step = interval.as_millis().max(1);
    let since = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let next = (since / step + 1) * step;
    UNIX_EPOCH + Duration::from_millis(u64::try_from(next).unwrap_or(u64::MAX))
}

/// The last wall-clock multiple of `interval` at or before `now`.
pub fn previous_boundary(now: SystemTime, interval: Duration) -> SystemTime {
    let step = interval.as_millis().max(1);
    let since = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(u64::try_from(since / step * step).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// Merge level N-1 into level N.
    Level(u8),
    /// Write an L9 snapshot, then apply snapshot and level retention.
    Snapshot,
    L0Retention,
}

/// The jobs due now, in the order they must run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    pub jobs: Vec<Job>,
}

impl Due {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// Next run time of each job of one database.
#[derive(Debug, Clone)]
pub struct Schedule {
    levels: Vec<SystemTime>,
    snapshot: SystemTime,
    l0_retention: SystemTime,
    /// The replica had a snapshot at the last look; without one, the snapshot job runs as soon
    /// as a level compaction wrote something (as Litestream snapshots at start-up).
    pub has_snapshot: bool,
    /// What each job has already read: due jobs with nothing new are skipped.
    pub activity: Activity,
}

impl Schedule {
    /// Everything is due at `now` (jobs run once at start-up).
    pub fn new(settings: &Settings, now: SystemTime) -> Schedule {
        Schedule {
            levels: vec![now; settings.levels.len()],
            snapshot: now,
            l0_retention: now,
            has_snapshot: true,
            activity: Activity::default(),
        }
    }

    /// The earliest time a job is due.
    pub fn next_due(&self) -> SystemTime {
        self.levels
            .iter()
            .copied()
            .chain([self.snapshot, self.l0_retention])
            .min()
            .expect("at least two entries")
    }

    /// The earliest time at which a job has something to read: the boundary of each job
    /// that is needed now, and for L0 retention that waits for its files to age, the first
    /// check after they have. `None` when nothing is left to do without a new upload.
    pub fn next_needed(&self, now: SystemTime) -> Option<SystemTime> {
        let a = &self.activity;
        let levels = self
            .levels
            .iter()
            .enumerate()
            .filter(|(i, _)| a.needed(Job::Level(*i as u8 + 1), now))
            .map(|(_, t)| *t);
        let snapshot = a.needed(Job::Snapshot, now).then_some(self.snapshot);
        let l0 = if a.needed(Job::L0Retention, now) {
            Some(self.l0_retention)
        } else {
            a.l0_settles_at().map(|t| t.max(self.l0_retention))
        };
        levels.chain(snapshot).chain(l0).min()
    }

    /// Moves every job time already past to its next boundary after `now`: used when a parked
    /// database wakes, whose jobs had nothing to read at the boundaries it slept through.
    pub fn resume(&mut self, settings: &Settings, now: SystemTime) {
        for (next, interval) in self.levels.iter_mut().zip(&settings.levels) {
            if *next <= now {
                *next = next_boundary(now, *interval);
            }
        }
        if self.snapshot <= now {
            self.snapshot = next_boundary(now, settings.snapshot_interval);
        }
        if self.l0_retention <= now {
            self.l0_retention = now + settings.l0_retention_check_interval;
        }
    }

    /// Runs the snapshot job at the next round.
    pub fn snapshot_soon(&mut self) {
        self.snapshot = UNIX_EPOCH;
    }

    /// The jobs due at `now`; each is rescheduled to its next boundary.
    pub fn take_due(&mut self, settings: &Settings, now: SystemTime) -> Due {
        let mut due = Due::default();
        for (i, next) in self.levels.iter_mut().enumerate() {
            if *next <= now {
                due.jobs.push(Job::Level(i as u8 + 1));
                *next = next_boundary(now, settings.levels[i]);
            }
        }
        if self.snapshot <= now {
            due.jobs.push(Job::Snapshot);
            self.snapshot = next_boundary(now, settings.snapshot_interval);
        }
        if self.l0_retention <= now {
            due.jobs.push(Job::L0Retention);
            self.l0_retention = now + settings.l0_retention_check_interval;
        }
        due
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn boundaries_are_wall_clock_multiples() {
        let s30 = Duration::from_secs(30);
        assert_eq!(next_boundary(at(1_000), s30), at(30_000));
        assert_eq!(next_boundary(at(30_000), s30), at(60_000));
        assert_eq!(next_boundary(at(59_999), s30), at(60_000));
        let h = Duration::from_secs(3600);
        assert_eq!(next_boundary(at(3_600_000 * 5 + 7), h), at(3_600_000 * 6));
        assert_eq!(
            previous_boundary(at(3_600_000 * 5 + 7), h),
            at(3_600_000 * 5)
        );
        assert_eq!(previous_boundary(at(30_000), s30), at(30_000));
    }

    /// Short intervals for the schedule and activity tests: levels of 10 s and 20 s, snapshots
    /// every 30 s, L0 retention 15 s checked every 5 s.
    pub(crate) fn settings() -> Settings {
        Settings {
            levels: vec![Duration::from_secs(10), Duration::from_secs(20)],
            snapshot_interval: Duration::from_secs(30),
            snapshot_retention: Duration::from_secs(60),
            l0_retention: Duration::from_secs(15),
            l0_retention_check_interval: Duration::from_secs(5),
            retention_enabled: true,
        }
    }

    #[test]
    fn everything_runs_at_start_up_in_order_then_at_boundaries() {
        let s = settings();
        let mut sch = Schedule::new(&s, at(1_000));
        let due = sch.take_due(&s, at(1_000));
        assert_eq!(
            due.jobs,
            vec![
                Job::Level(1),
                Job::Level(2),
                Job::Snapshot,
                Job::L0Retention
            ]
        );
        assert!(sch.take_due(&s, at(1_001)).is_empty());
        assert_eq!(sch.next_due(), at(6_000));
        assert_eq!(sch.take_due(&s, at(6_000)).jobs, vec![Job::L0Retention]);
        assert_eq!(sch.next_due(), at(10_000));
        assert_eq!(sch.take_due(&s, at(10_000)).jobs, vec![Job::Level(1)]);
        // :20 — level 1 and 2 together, level 1 first.
        assert_eq!(
            sch.take_due(&s, at(20_000)).jobs,
            vec![Job::Level(1), Job::Level(2), Job::L0Retention]
        );
        assert_eq!(
            sch.take_due(&s, at(30_000)).jobs,
            vec![Job::Level(1), Job::Snapshot, Job::L0Retention]
        );
        // A late wake-up runs each job once and realigns on the boundaries.
        let due = sch.take_due(&s, at(95_000));
        assert_eq!(
            due.jobs,
            vec![
                Job::Level(1),
                Job::Level(2),
                Job::Snapshot,
                Job::L0Retention
            ]
        );
        assert_eq!(sch.next_due(), at(100_000));
    }

    #[test]
    fn a_resumed_schedule_waits_for_the_next_boundaries() {
        let s = settings();
        let mut sch = Schedule::new(&s, at(0));
        sch.take_due(&s, at(0));
        // Parked since; woken at 47 s by an upload: level 1 at 50, level 2 at 60, the
        // snapshot at 60, L0 retention 5 s later.
        sch.resume(&s, at(47_000));
        assert!(sch.take_due(&s, at(47_000)).is_empty());
        assert_eq!(sch.next_due(), at(50_000));
        assert_eq!(sch.take_due(&s, at(50_000)).jobs, vec![Job::Level(1)]);
        assert_eq!(sch.take_due(&s, at(52_000)).jobs, vec![Job::L0Retention]);
        assert_eq!(
            sch.take_due(&s, at(60_000)).jobs,
            vec![
                Job::Level(1),
                Job::Level(2),
                Job::Snapshot,
                Job::L0Retention
            ]
        );
    }

    #[test]
    fn only_needed_jobs_set_the_next_wake_up() {
        let s = settings();
        let mut sch = Schedule::new(&s, at(0));
        sch.activity.observe(0);
        assert_eq!(sch.next_needed(at(0)), Some(at(0)), "start-up round");
        sch.activity.settle(&s, 0);
        sch.take_due(&s, at(0));
        assert_eq!(sch.next_needed(at(1_000)), None, "settled: parked");
        // An upload: level 1 and the snapshot need a run; level 1's boundary comes first.
        sch.activity.observe(1);
        assert_eq!(sch.next_needed(at(1_000)), Some(at(10_000)));
        sch.take_due(&s, at(10_000));
        let inputs = sch.activity.inputs(Job::Level(1));
        sch.activity.succeeded(Job::Level(1), inputs);
        sch.activity.stored(1);
        let inputs = sch.activity.inputs(Job::Snapshot);
        sch.activity.succeeded(Job::Snapshot, inputs);
        // Level 2 (its boundary at 20 s) and L0 retention (5 s checks) now have input.
        assert_eq!(sch.next_needed(at(10_000)), Some(at(15_000)));
        let inputs = sch.activity.inputs(Job::L0Retention);
        sch.activity
            .l0_retention_succeeded(inputs, Some(at(40_000)));
        assert_eq!(sch.next_needed(at(10_000)), Some(at(20_000)), "level 2");
        let inputs = sch.activity.inputs(Job::Level(2));
        sch.activity.succeeded(Job::Level(2), inputs);
        // Only the ageing L0 files are left: the wake-up is when they are old enough.
        assert_eq!(sch.next_needed(at(20_000)), Some(at(40_000)));
    }

    #[test]
    fn snapshot_soon_runs_the_snapshot_at_the_next_round() {
        let s = settings();
        let mut sch = Schedule::new(&s, at(0));
        sch.take_due(&s, at(0));
        sch.snapshot_soon();
        assert_eq!(sch.take_due(&s, at(1)).jobs, vec![Job::Snapshot]);
    }

    #[test]
    fn defaults_follow_litestream() {
        let s = Settings::default();
        assert_eq!(
            s.levels,
            vec![
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(s.snapshot_interval, Duration::from_secs(86_400));
        assert_eq!(s.l0_retention, Duration::from_secs(300));
        assert!(s.retention_enabled);
    }
}
