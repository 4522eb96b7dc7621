//! The wire names are exactly DESIGN §4's, and omitted fields get the documented
//! defaults. Values below differ from every default, so a misspelt name (which serde
//! would silently ignore and default) fails the test.

use couchestor_core::{
    ErasureCodingPolicy, GoDuration, StoragePolicy, Tier, VolumeMigration,
    api::{DEFAULT_EC_MIN_VOLUME_SIZE_BYTES, StoragePolicySpec},
};

const FULL_POLICY: &str = r#"
apiVersion: couchestor.io/v1alpha1
kind: StoragePolicy
metadata: {name: full}
spec:
  storageClassName: sc-a
  volumeSelector: {matchLabels: {app: db}}
  hotPoolSelector: {matchLabels: {tier: nvme}}
  warmPoolSelector: {matchLabels: {tier: ssd}}
  coldPoolSelector: {matchLabels: {tier: hdd}}
  highWatermarkIOPS: 9000
  warmWatermarkIOPS: 3000
  lowWatermarkIOPS: 100
  samplingWindow: 2h
  cooldownPeriod: 3d
  migrationTimeout: 45m
  maxConcurrentMigrations: 7
  preserveSourceReplica: true
  enabled: false
  dryRun: true
  ecPolicyRef: ec-8-3
  ecMinVolumeSizeBytes: 1073741824
  archiveAfter: 2w
"#;

#[test]
fn a_policy_with_the_design_wire_names_deserializes_to_the_values_written() {
    let p: StoragePolicy = serde_yaml::from_str(FULL_POLICY).expect("deserializes");
    let s = &p.spec;
    assert_eq!(s.storage_class_name, "sc-a");
    assert!(s.volume_selector.is_some());
    assert!(s.warm_pool_selector.is_some());
    assert_eq!(
        (
            s.high_watermark_iops,
            s.warm_watermark_iops,
            s.low_watermark_iops
        ),
        (9000, Some(3000), 100)
    );
    assert_eq!(s.sampling_window, GoDuration::new("2h"));
    assert_eq!(s.cooldown_period, GoDuration::new("3d"));
    assert_eq!(s.migration_timeout, GoDuration::new("45m"));
    assert_eq!(s.max_concurrent_migrations, 7);
    assert!(s.preserve_source_replica);
    assert!(!s.enabled);
    assert!(s.dry_run);
    assert_eq!(s.ec_policy_ref.as_deref(), Some("ec-8-3"));
    assert_eq!(s.ec_min_volume_size_bytes, 1 << 30);
    assert_eq!(s.archive_after, GoDuration::new("2w"));
    // And it serializes back with the same names.
    let json = serde_json::to_value(&p).expect("serializes");
    for key in [
        "highWatermarkIOPS",
        "warmWatermarkIOPS",
        "lowWatermarkIOPS",
        "ecMinVolumeSizeBytes",
    ] {
        assert!(json["spec"].get(key).is_some(), "{key} missing in {json}");
    }
}

#[test]
fn omitted_policy_fields_take_the_design_defaults() {
    let s: StoragePolicySpec = serde_yaml::from_str(
        "{storageClassName: sc, hotPoolSelector: {matchLabels: {t: h}}, coldPoolSelector: {matchLabels: {t: c}}}",
    )
    .expect("deserializes");
    assert_eq!((s.high_watermark_iops, s.low_watermark_iops), (5000, 500));
    assert_eq!(s.warm_watermark_iops, None);
    assert_eq!(s.effective_warm_watermark_iops(), None, "no warm tier");
    assert_eq!(
        s.sampling_window.parse().ok(),
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(s.cooldown_period.as_str(), "24h");
    assert_eq!(s.migration_timeout.as_str(), "30m");
    assert_eq!(s.max_concurrent_migrations, 2);
    assert!(!s.preserve_source_replica && s.enabled && !s.dry_run);
    assert_eq!(s.ec_min_volume_size_bytes, DEFAULT_EC_MIN_VOLUME_SIZE_BYTES);
    assert_eq!(s.archive_after.as_str(), "7d");
    assert_eq!(s.tiers(), vec![Tier::Hot, Tier::Cold]);
}

#[test]
fn omitted_ec_policy_fields_take_the_design_defaults() {
    let p: ErasureCodingPolicy =
        serde_yaml::from_str("{apiVersion: couchestor.io/v1alpha1, kind: ErasureCodingPolicy, metadata: {name: d}, spec: {}}")
            .expect("deserializes");
    assert_eq!((p.spec.data_shards, p.spec.parity_shards), (4, 2));
    assert_eq!(p.spec.stripe_size_bytes, 1 << 20);
    assert_eq!(p.spec.algorithm, "ReedSolomon");
    assert_eq!(p.spec.effective_min_healthy_shards(), 6);
    assert!(p.spec.scrubbing_enabled);
    assert_eq!(p.spec.scrub_interval.as_str(), "7d");
    assert!((p.spec.overhead() - 1.5).abs() < 1e-9);
}

#[test]
fn tiers_are_lowercase_on_the_wire() {
    let m: VolumeMigration = serde_yaml::from_str(
        "{apiVersion: couchestor.io/v1alpha1, kind: VolumeMigration, metadata: {name: m}, spec: {policyRef: p, volumeName: v, volumeId: u, fromTier: hot, toTier: cold}}",
    )
    .expect("deserializes");
    assert_eq!((m.spec.from_tier, m.spec.to_tier), (Tier::Hot, Tier::Cold));
    assert!(serde_yaml::from_str::<VolumeMigration>(
        "{apiVersion: couchestor.io/v1alpha1, kind: VolumeMigration, metadata: {name: m}, spec: {policyRef: p, volumeName: v, volumeId: u, fromTier: Hot, toTier: cold}}"
    )
    .is_err());
}
