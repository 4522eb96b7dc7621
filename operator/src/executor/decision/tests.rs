use super::*;

fn r(uuid: &str, role: Role, healthy: bool) -> ReplicaView {
    ReplicaView {
        uuid: uuid.to_owned(),
        pool: format!("pool-{uuid}"),
        role,
        healthy,
        rebuilding: false,
    }
}

fn view(starting: usize, replicas: Vec<ReplicaView>) -> View {
    View {
        starting,
        num_replicas: replicas.len(),
        replicas,
        preserve_source: false,
        aborting: false,
    }
}

fn victims(a: Action) -> Vec<String> {
    match a {
        Action::RemoveReplica { victims } => victims,
        other => panic!("expected a removal, got {other:?}"),
    }
}

#[test]
fn a_fresh_move_adds_a_replica_first() {
    let v = view(1, vec![r("a", Role::Original, true)]);
    assert_eq!(next(&v), Action::AddReplica);
}

#[test]
fn a_rebuilding_replica_is_waited_for() {
    let mut added = r("t", Role::Added, false);
    added.rebuilding = true;
    let v = view(1, vec![r("a", Role::Original, true), added]);
    assert!(matches!(next(&v), Action::Wait { .. }));
}

#[test]
fn with_a_spare_healthy_replica_the_source_is_removed() {
    let v = view(
        1,
        vec![r("a", Role::Original, true), r("t", Role::Added, true)],
    );
    assert_eq!(victims(next(&v)), ["a"]);
}

#[test]
fn without_a_spare_healthy_replica_nothing_is_removed() {
    // Two sources, one target: the target tier needs another replica first.
    let v = view(
        2,
        vec![r("b", Role::Original, true), r("t", Role::Added, true)],
    );
    assert_eq!(next(&v), Action::AddReplica);
}

#[test]
fn all_replicas_on_the_target_tier_is_success() {
    let v = view(
        2,
        vec![r("t1", Role::Added, true), r("t2", Role::Added, true)],
    );
    assert!(matches!(
        next(&v),
        Action::Finish {
            outcome: Finish::Succeeded,
            ..
        }
    ));
}

#[test]
fn preserving_the_source_never_removes_it() {
    let mut v = view(
        1,
        vec![r("a", Role::Original, true), r("t", Role::Added, true)],
    );
    v.preserve_source = true;
    assert!(matches!(
        next(&v),
        Action::Finish {
            outcome: Finish::Succeeded,
            ..
        }
    ));
    // A stray replica is still removed in preserve mode.
    v.replicas.push(r("s", Role::Stray, true));
    v.num_replicas = 3;
    assert_eq!(victims(next(&v)), ["s"]);
}

#[test]
fn a_failed_rebuild_is_removed_while_the_starting_count_is_healthy() {
    let v = view(
        1,
        vec![r("a", Role::Original, true), r("t", Role::Added, false)],
    );
    assert_eq!(victims(next(&v)), ["t"]);
}

#[test]
fn a_fault_outside_the_move_below_the_starting_count_fails_without_touching_replicas() {
    let v = view(
        2,
        vec![r("a", Role::Original, true), r("b", Role::Original, false)],
    );
    assert!(matches!(
        next(&v),
        Action::Finish {
            outcome: Finish::Failed,
            ..
        }
    ));
}

#[test]
fn a_replica_count_ahead_of_the_topology_is_waited_for() {
    let mut v = view(1, vec![r("a", Role::Original, true)]);
    v.num_replicas = 2;
    assert!(matches!(next(&v), Action::Wait { .. }));
}

#[test]
fn rollback_removes_the_added_replica_and_ends_rolled_back() {
    let mut v = view(
        1,
        vec![r("a", Role::Original, true), r("t", Role::Added, true)],
    );
    v.aborting = true;
    assert_eq!(victims(next(&v)), ["t"]);
    let mut back = view(1, vec![r("a", Role::Original, true)]);
    back.aborting = true;
    assert!(matches!(
        next(&back),
        Action::Finish {
            outcome: Finish::RolledBack,
            ..
        }
    ));
}

#[test]
fn rollback_removes_a_rebuilding_replica_without_waiting() {
    let mut added = r("t", Role::Added, false);
    added.rebuilding = true;
    let mut v = view(1, vec![r("a", Role::Original, true), added]);
    v.aborting = true;
    assert_eq!(victims(next(&v)), ["t"]);
}

#[test]
fn rollback_that_would_go_below_the_starting_count_stops_as_failed() {
    let mut v = view(
        2,
        vec![
            r("a", Role::Original, true),
            r("b", Role::Original, false),
            r("t", Role::Added, true),
        ],
    );
    v.aborting = true;
    // Two healthy (a, t) of a starting two, and the unhealthy one is an original:
    // removing t could only be done by dropping below two healthy.
    assert!(matches!(
        next(&v),
        Action::Finish {
            outcome: Finish::Failed,
            ..
        }
    ));
}

#[test]
fn rollback_after_a_replica_already_moved_ends_failed_with_the_split() {
    let mut v = view(
        2,
        vec![r("b", Role::Original, true), r("t", Role::Added, true)],
    );
    v.aborting = true;
    match next(&v) {
        Action::Finish {
            outcome: Finish::Failed,
            message,
        } => assert!(message.contains("1 of 2 source replicas"), "{message}"),
        other => panic!("{other:?}"),
    }
}
