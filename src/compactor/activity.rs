//! What reached the replica since each compaction job last ran, so that a job with nothing new
//! to read is skipped at its boundary and an idle database makes no requests (design:
//! `docs/compaction.md`, "Idle databases make no requests"). Pure: the caller passes the time
//! and the upload count.
//!
//! Each job reads some levels; a counter per level counts the changes this process made to it
//! (level 0: L0 files the uploader stored; level N: files the level-N job stored). A job that
//! succeeded while its input counters had their current values has nothing new to do. L0
//! retention also waits on time: the files it keeps become deletable as they age, so a pass
//! reports when the files it kept will all be old enough, and it runs again then (once) even
//! without new input.
//!
//! Snapshot and level retention are time-based too, but only ever delete files of a history
//! that stopped growing: while the database stays idle they wait, and they run again at the
//! snapshot boundary after the next write. An idle replica keeps the files it had when it went
//! idle, so its storage does not grow either.

use std::collections::HashMap;
use std::time::SystemTime;

use super::schedule::Job;
use super::schedule::Settings;
use crate::replica::SNAPSHOT_LEVEL;

#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Changes per level made by this process: index 0 counts L0 files uploaded, index N files
    /// stored by the level-N job (N = 9: snapshots).
    changes: [u64; SNAPSHOT_LEVEL as usize + 1],
    /// The uploader's count at the last look.
    uploads: Option<u64>,
    /// For each job: its input counters when it last succeeded.
    done: HashMap<Job, u64>,
    /// When the L0 files the last L0 retention pass kept will all be old enough to delete.
    l0_settles_at: Option<SystemTime>,
}

impl Activity {
    /// Notes the number of L0 files this process has uploaded so far.
    pub fn observe(&mut self, uploads: u64) {
        if self.uploads != Some(uploads) {
            self.uploads = Some(uploads);
            self.changes[0] += 1;
        }
    }

    /// Notes that a job stored a file at `level`.
    pub fn stored(&mut self, level: u8) {
        if let Some(c) = self.changes.get_mut(usize::from(level)) {
            *c += 1;
        }
    }

    /// The input counters of `job`: what it reads that this process can change.
    pub fn inputs(&self, job: Job) -> u64 {
        match job {
            Job::Level(n) => self.changes[usize::from(n.saturating_sub(1))],
            // A snapshot covers the latest TXID; merges below it do not move that.
            Job::Snapshot => self.changes[0],
            // New L0 files are never deletable before L1 covers them: only L1 (and time) can
            // give L0 retention something to do.
            Job::L0Retention => self.changes[1],
        }
    }

    /// False when `job` already succeeded with the inputs it would read now (and, for L0
    /// retention, no file it kept has aged enough since).
    pub fn needed(&self, job: Job, now: SystemTime) -> bool {
        if self.done.get(&job) != Some(&self.inputs(job)) {
            return true;
        }
        job == Job::L0Retention && self.l0_settles_at.is_some_and(|t| now >= t)
    }

    /// Records that `job` succeeded having read `inputs` (taken before it ran).
    pub fn succeeded(&mut self, job: Job, inputs: u64) {
        self.done.insert(job, inputs);
    }

    /// Records a successful L0 retention pass (see [`Activity::needed`]).
    pub fn l0_retention_succeeded(&mut self, inputs: u64, settles_at: Option<SystemTime>) {
        self.succeeded(Job::L0Retention, inputs);
        self.l0_settles_at = settles_at;
    }

    /// True when no job has anything to do at `now`.
    #[cfg(test)]
    pub fn idle(&self, settings: &Settings, now: SystemTime) -> bool {
        all_jobs(settings).all(|j| !self.needed(j, now))
    }

    /// True when no job has anything to do now or later without new uploads.
    #[cfg(test)]
    pub fn settled(&self, settings: &Settings, now: SystemTime) -> bool {
        self.idle(settings, now) && self.l0_settles_at.is_none_or(|t| t <= now)
    }

    /// When the L0 files the last L0 retention pass kept will all be old enough to delete.
    pub fn l0_settles_at(&self) -> Option<SystemTime> {
        self.l0_settles_at
    }

    /// Records every job as done with the current inputs, `uploads` observed: the state of a
    /// database the previous process left settled (its `compacted` marker).
    pub fn settle(&mut self, settings: &Settings, uploads: u64) {
        self.observe(uploads);
        for job in all_jobs(settings) {
            let inputs = self.inputs(job);
            self.succeeded(job, inputs);
        }
        self.l0_settles_at = None;
    }
}

fn all_jobs(settings: &Settings) -> impl Iterator<Item = Job> {
    (1..=settings.levels.len() as u8)
        .map(Job::Level)
        .chain([Job::Snapshot, Job::L0Retention])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compactor::schedule::tests::settings;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    /// Runs every needed job at `now` as the compactor would: `stores` says which level a job
    /// stores a file into, `settles` what an L0 retention pass reports. Returns the jobs run.
    fn round(
        a: &mut Activity,
        now: SystemTime,
        stores: &[(Job, u8)],
        settles: Option<SystemTime>,
    ) -> Vec<Job> {
        let mut ran = Vec::new();
        for job in [
            Job::Level(1),
            Job::Level(2),
            Job::Snapshot,
            Job::L0Retention,
        ] {
            if !a.needed(job, now) {
                continue;
            }
            let inputs = a.inputs(job);
            for &(j, level) in stores {
                if j == job {
                    a.stored(level);
                }
            }
            if job == Job::L0Retention {
                a.l0_retention_succeeded(inputs, settles);
            } else {
                a.succeeded(job, inputs);
            }
            ran.push(job);
        }
        ran
    }

    #[test]
    fn a_new_process_runs_everything_once_then_nothing_while_idle() {
        let s = settings();
        let mut a = Activity::default();
        a.observe(0);
        assert_eq!(round(&mut a, at(0), &[], None).len(), 4);
        assert!(a.idle(&s, at(0)));
        for t in [1, 30, 3600, 86_400 * 7] {
            a.observe(0);
            assert!(round(&mut a, at(t), &[], None).is_empty(), "at {t}");
        }
    }

    #[test]
    fn an_upload_wakes_the_levels_and_l0_retention_runs_once_more_when_its_files_aged() {
        let s = settings();
        let mut a = Activity::default();
        a.observe(0);
        round(&mut a, at(0), &[], None);
        a.observe(1);
        assert!(!a.idle(&s, at(100)));
        // L1 merges the new L0 file, L2 then merges what L1 stored, the snapshot covers it;
        // L0 retention keeps files that are deletable at 130.
        assert_eq!(
            round(
                &mut a,
                at(100),
                &[(Job::Level(1), 1), (Job::Level(2), 2), (Job::Snapshot, 9)],
                Some(at(130))
            ),
            vec![
                Job::Level(1),
                Job::Level(2),
                Job::Snapshot,
                Job::L0Retention
            ]
        );
        // Nothing new for L1 (what L2 stored is not its input); L0 retention waits for 130.
        assert!(round(&mut a, at(110), &[], None).is_empty());
        assert!(!a.idle(&s, at(130)));
        assert_eq!(round(&mut a, at(130), &[], None), vec![Job::L0Retention]);
        assert!(a.idle(&s, at(130)));
        assert!(round(&mut a, at(100_000), &[], None).is_empty());
    }

    #[test]
    fn settled_waits_for_l0_files_to_age_and_settle_marks_everything_done() {
        let s = settings();
        let mut a = Activity::default();
        a.observe(1);
        assert!(!a.settled(&s, at(0)));
        round(&mut a, at(0), &[(Job::Level(1), 1)], Some(at(30)));
        assert!(a.idle(&s, at(10)));
        assert!(!a.settled(&s, at(10)), "L0 files still age");
        round(&mut a, at(30), &[], None);
        assert!(a.settled(&s, at(30)));
        let mut b = Activity::default();
        b.settle(&s, 0);
        assert!(b.settled(&s, at(0)));
        b.observe(1);
        assert!(!b.idle(&s, at(0)), "a new upload wakes it");
    }

    #[test]
    fn a_failed_job_is_not_recorded_and_runs_again() {
        let mut a = Activity::default();
        a.observe(1);
        // Level 1 fails: nothing recorded, still needed.
        assert!(a.needed(Job::Level(1), at(0)));
        let inputs = a.inputs(Job::Level(1));
        a.succeeded(Job::Level(1), inputs);
        assert!(!a.needed(Job::Level(1), at(1)));
    }

    #[test]
    fn inputs_taken_before_a_run_see_uploads_made_during_it() {
        let mut a = Activity::default();
        a.observe(1);
        let inputs = a.inputs(Job::Level(1));
        // An upload lands while the merge runs: the merge did not read it.
        a.observe(2);
        a.succeeded(Job::Level(1), inputs);
        assert!(a.needed(Job::Level(1), at(1)));
    }
}
