use super::*;

#[test]
fn lag_is_the_age_of_the_oldest_pending_commit() {
    let p = Progress::new(0, 0);
    assert_eq!(p.snapshot().lag_seconds(10_000), 0.0, "idle and empty");
    p.captured(1, 1, 100, 1_000);
    p.captured(1, 2, 200, 2_000);
    p.captured(2, 1, 50, 3_000);
    let s = p.snapshot();
    assert_eq!((s.pending_txns, s.pending_bytes), (4, 350));
    assert_eq!(s.oldest_pending_ms, Some(1_000));
    assert_eq!(s.lag_seconds(4_500), 3.5);

    // Segment 1 sealed into TXID 1 (a 70-byte file); segment 2 still unsealed.
    p.sealed(1, Some(1), 70);
    let s = p.snapshot();
    assert_eq!((s.txid, s.pending_txns, s.pending_bytes), (1, 4, 120));
    assert_eq!(s.oldest_pending_ms, Some(1_000));

    // TXID 1 acknowledged: only the commit of 3_000 is pending.
    p.acked(1);
    let s = p.snapshot();
    assert_eq!((s.replicated_txid, s.pending_txns), (1, 1));
    assert_eq!(s.lag_seconds(4_000), 1.0);

    p.sealed(2, Some(2), 10);
    p.acked(2);
    let s = p.snapshot();
    assert_eq!(
        (s.pending_txns, s.pending_bytes, s.oldest_pending_ms),
        (0, 0, None)
    );
    assert_eq!(s.lag_seconds(99_000), 0.0, "caught up: 0 while idle");
}

#[test]
fn discarded_batches_stay_pending_until_a_file_carries_them() {
    let p = Progress::new(5, 5);
    p.captured(7, 1, 10, 100);
    p.sealed(7, None, 0); // discarded until the next full image
    assert_eq!(p.snapshot().oldest_pending_ms, Some(100));
    p.captured(8, 1, 10, 200);
    p.sealed(8, Some(6), 99);
    let s = p.snapshot();
    assert_eq!(
        (s.pending_txns, s.pending_bytes, s.oldest_pending_ms),
        (2, 99, Some(100))
    );
    p.acked(6);
    assert_eq!(p.snapshot().pending_txns, 0);
}

#[test]
fn a_restart_moves_sealed_files_back_to_pending() {
    let p = Progress::new(0, 0);
    p.captured(1, 1, 10, 100);
    p.sealed(1, Some(1), 10);
    p.restarted(9);
    let s = p.snapshot();
    assert_eq!((s.txid, s.replicated_txid, s.pending_txns), (9, 9, 1));
    p.acked(9); // acknowledging the restart point does not ack the carried commit
    assert_eq!(p.snapshot().pending_txns, 1);
    p.captured(2, 1, 10, 200);
    p.sealed(2, Some(10), 20);
    p.acked(10);
    assert_eq!(p.snapshot().pending_txns, 0);
}

#[test]
fn wait_acked_sees_only_what_was_committed_before() {
    let p = std::sync::Arc::new(Progress::new(0, 0));
    assert!(p.wait_acked(p.newest(), Duration::ZERO), "nothing captured");
    p.captured(1, 1, 10, 1);
    let target = p.newest();
    assert!(!p.wait_acked(target, Duration::from_millis(1)));
    let q = std::sync::Arc::clone(&p);
    let t = std::thread::spawn(move || {
        q.sealed(1, Some(1), 10);
        q.captured(2, 1, 10, 2); // committed after the target: not waited for
        q.acked(1);
    });
    assert!(p.wait_acked(target, Duration::from_secs(60)));
    t.join().unwrap();
    assert_eq!(p.snapshot().pending_txns, 1);
}

#[test]
fn recovered_files_and_errors() {
    let p = Progress::new(3, 1);
    p.recovered_sealed(2, 500, 40);
    p.recovered_sealed(3, 700, 60);
    let s = p.snapshot();
    assert_eq!(
        (s.pending_txns, s.pending_bytes, s.oldest_pending_ms),
        (2, 100, Some(500))
    );
    p.sync_failed("replica down".into());
    assert_eq!(p.snapshot().last_error.as_deref(), Some("replica down"));
    p.acked(3);
    assert_eq!(p.sync_ok().as_deref(), Some("replica down"));
    assert_eq!(p.sync_ok(), None);
    let s = p.snapshot();
    assert!(s.last_sync.is_some() && s.last_error.is_none());
    p.capture_failed("disk full".into());
    assert_eq!(p.snapshot().capture_error.as_deref(), Some("disk full"));
    p.captured(9, 1, 1, 1);
    assert_eq!(p.snapshot().capture_error, None);
}

#[test]
fn a_stop_is_kept_through_later_syncs_and_resets() {
    let p = Progress::new(0, 0);
    p.stopped("replication stopped: first".into());
    p.stopped("replication stopped: second".into());
    p.sync_ok();
    p.reset(0, 0);
    assert_eq!(
        p.snapshot().stopped.as_deref(),
        Some("replication stopped: first")
    );
}
