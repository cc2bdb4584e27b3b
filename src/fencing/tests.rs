use super::lease::identity;
use super::*;
use crate::replica::FileReplica;

fn setup() -> (tempfile::TempDir, PathBuf, Arc<dyn ReplicaClient>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let client: Arc<dyn ReplicaClient> = Arc::new(FileReplica::new(dir.path().join("replica")));
    (dir, db, client)
}

fn stored(client: &Arc<dyn ReplicaClient>) -> Lease {
    Lease::decode(&client.read_object(LEASE_OBJECT).unwrap().data).unwrap()
}

fn plant(client: &Arc<dyn ReplicaClient>, lease: &Lease) {
    client
        .write_object(LEASE_OBJECT, &lease.encode(), WriteCondition::Always)
        .unwrap();
}

/// A lease of a live process on another machine.
fn foreign(expires_ms: i64) -> Lease {
    Lease {
        owner: "other-host:boot/4242/1/abcd".into(),
        host: "other-host:boot".into(),
        pid: 4242,
        pid_ns: "pid:[4026531836]".into(),
        pid_start: 1,
        db: "/elsewhere/app.db".into(),
        acquired_ms: 0,
        expires_ms,
    }
}

#[test]
fn first_writer_creates_the_lease_at_the_replica_root() {
    let (dir, db, client) = setup();
    ensure_lease(&db, &client).unwrap();
    let l = stored(&client);
    assert!(l.is_mine(&db.display().to_string()));
    assert!(l.expires_ms > now_ms());
    assert!(dir.path().join("replica").join(LEASE_OBJECT).is_file());
    assert!(
        client.list_all().unwrap().is_empty(),
        "no LTX file was written"
    );
    // Renewing keeps it ours and pushes the expiry.
    let before = l.expires_ms;
    acquire(&mut entry(&db, &client).lock(), now_ms() + 5_000).unwrap();
    assert!(stored(&client).expires_ms > before);
}

#[test]
fn a_live_foreign_lease_is_refused_and_left_alone() {
    let (_dir, db, client) = setup();
    let theirs = foreign(now_ms() + 60_000);
    plant(&client, &theirs);
    let err = ensure_lease(&db, &client).unwrap_err();
    assert!(matches!(err, FenceError::Held { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("other-host") && msg.contains("/elsewhere/app.db"),
        "{msg}"
    );
    assert_eq!(stored(&client), theirs);
}

#[test]
fn an_expired_or_released_lease_is_taken_over() {
    for expires in [now_ms() - 1, 0] {
        let (_dir, db, client) = setup();
        plant(&client, &foreign(expires));
        ensure_lease(&db, &client).unwrap();
        assert!(stored(&client).is_mine(&db.display().to_string()));
    }
}

#[test]
fn a_lease_of_a_dead_process_on_this_machine_is_taken_over() {
    if !Path::new("/proc/self/stat").exists() {
        return; // liveness is only known with /proc
    }
    let (_dir, db, client) = setup();
    let id = identity();
    let dead = Lease {
        owner: format!("{}/{}/{}/dead", id.host, u32::MAX - 7, 1),
        host: id.host.clone(),
        pid: u32::MAX - 7,
        pid_ns: id.pid_ns.clone(),
        pid_start: 1,
        db: db.display().to_string(),
        acquired_ms: 0,
        expires_ms: now_ms() + 60_000,
    };
    plant(&client, &dead);
    ensure_lease(&db, &client).unwrap();
    assert!(stored(&client).is_mine(&db.display().to_string()));
}

#[test]
fn a_lease_from_another_pid_namespace_of_this_machine_is_waited_out() {
    let (_dir, db, client) = setup();
    let id = identity();
    // Another container with the same hostname: its pid does not exist in our namespace, yet
    // the holder may well be alive.
    let other = Lease {
        owner: format!("{}/{}/{}/container", id.host, u32::MAX - 7, 1),
        host: id.host.clone(),
        pid: u32::MAX - 7,
        pid_ns: "pid:[1]".into(),
        pid_start: 1,
        db: "/container/app.db".into(),
        acquired_ms: 0,
        expires_ms: now_ms() + 60_000,
    };
    plant(&client, &other);
    let err = ensure_lease(&db, &client).unwrap_err();
    assert!(matches!(err, FenceError::Held { .. }), "{err}");
    assert_eq!(stored(&client), other, "the live lease was overwritten");
}

#[test]
fn a_lost_lease_is_noticed_at_renewal() {
    let (_dir, db, client) = setup();
    ensure_lease(&db, &client).unwrap();
    // Another writer took over (our lease had lapsed).
    plant(&client, &foreign(now_ms() + 60_000));
    let e = entry(&db, &client);
    let err = acquire(&mut e.lock(), now_ms()).unwrap_err();
    assert!(matches!(err, FenceError::Held { .. }), "{err}");
    assert!(e.lock().held.is_none());
    assert_eq!(
        stored(&client).owner,
        foreign(0).owner,
        "their lease is untouched"
    );
}

#[test]
fn another_database_in_this_process_is_refused_too() {
    let (dir, db, client) = setup();
    ensure_lease(&db, &client).unwrap();
    let other = dir.path().join("other.db");
    let err = ensure_lease(&other, &client).unwrap_err();
    assert!(matches!(err, FenceError::Held { .. }), "{err}");
}

#[test]
fn release_expires_our_lease_only() {
    let (_dir, db, client) = setup();
    ensure_lease(&db, &client).unwrap();
    release(&mut entry(&db, &client).lock());
    assert_eq!(stored(&client).expires_ms, 0);
    // Released while someone else holds it: theirs is kept.
    ensure_lease(&db, &client).unwrap();
    let theirs = foreign(now_ms() + 60_000);
    plant(&client, &theirs);
    release(&mut entry(&db, &client).lock());
    assert_eq!(stored(&client), theirs);
}

#[test]
fn lineage_refuses_a_foreign_non_empty_replica() {
    let (dir, db, client) = setup();
    let url = client.describe();
    let fresh = State::default();
    // Empty replica: a new lineage may start.
    check_lineage(&db, client.as_ref(), &fresh).unwrap();
    let src = dir.path().join("x.ltx");
    std::fs::write(&src, b"x").unwrap();
    client.put(0, 1, 7, &src, 0).unwrap();
    let err = check_lineage(&db, client.as_ref(), &fresh).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, FenceError::ForeignReplica { txid: 7, .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&url) && msg.contains(&db.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("litestream restore"), "says what to do: {msg}");
    // A position in another replica does not count.
    let elsewhere = State {
        txid: 9,
        replica: "file:///other".into(),
        ..State::default()
    };
    assert!(check_lineage(&db, client.as_ref(), &elsewhere).is_err());
    // A position in this replica does.
    let ours = State {
        txid: 3,
        replica: url,
        ..State::default()
    };
    check_lineage(&db, client.as_ref(), &ours).unwrap();
}

/// An idle writer's lease lapses (nothing renews it); its next write takes it back without
/// counting as a takeover. A lease another writer held meanwhile does count: the uploader then
/// compares its position with the replica again.
#[test]
fn a_lapsed_lease_is_retaken_and_a_takeover_is_reported_once() {
    let (_dir, db, client) = setup();
    ensure_lease(&db, &client).unwrap();
    assert!(took_over(&db), "the first acquisition is one");
    assert!(!took_over(&db), "reported once");

    // Our own lease lapsed while idle: retaken, not a takeover, acquisition time kept.
    let first = stored(&client);
    let later = now_ms() + LEASE_TTL.as_millis() as i64 + 1_000;
    acquire(&mut entry(&db, &client).lock(), later).unwrap();
    let retaken = stored(&client);
    assert!(retaken.is_mine(&db.display().to_string()));
    assert_eq!(retaken.acquired_ms, first.acquired_ms);
    assert!(!took_over(&db));

    // Another writer held it and let it expire: taking it is a takeover.
    plant(&client, &foreign(now_ms() - 1));
    acquire(&mut entry(&db, &client).lock(), now_ms()).unwrap();
    assert!(took_over(&db));
    assert!(!took_over(&db));
}

/// Renewing a lease this process wrote last is one conditional write, with no read before it.
#[test]
fn renewal_writes_without_reading_the_lease_first() {
    use crate::replica::counting::Counting;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let counting = Arc::new(Counting::new(FileReplica::new(dir.path().join("replica"))));
    let client: Arc<dyn ReplicaClient> = counting.clone();
    ensure_lease(&db, &client).unwrap();
    assert!(took_over(&db), "the first acquisition is one");
    let first = stored(&client);
    let reads = counting.object_reads();
    let later = now_ms() + 20_000;
    acquire(&mut entry(&db, &client).lock(), later).unwrap();
    assert_eq!(counting.object_reads(), reads, "the renewal read nothing");
    let renewed = stored(&client);
    assert_eq!(renewed.expires_ms, later + LEASE_TTL.as_millis() as i64);
    assert_eq!(renewed.acquired_ms, first.acquired_ms);
    assert!(!took_over(&db), "a renewal is not a takeover");
}
