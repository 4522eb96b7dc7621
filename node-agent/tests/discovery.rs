//! Discovery on sysfs fixture trees built here (see `tests/fixtures/sysfs/README.md`),
//! SMART from committed `smartctl --json` outputs, one test on this machine's real
//! `/sys`, and the `scan` binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use couchestor_core::Tier;
use couchestor_core::api::{Device, DeviceKind};
use couchestor_node_agent::discovery::{
    self, DiscoveryError, Inventory, Options, SmartOutcome, SmartSource, smart,
};

#[path = "discovery/tree.rs"]
mod tree;
use tree::*;

fn device<'a>(inventory: &'a Inventory, name: &str) -> &'a Device {
    inventory
        .devices
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no {name} in {inventory:#?}"))
}

fn unknown_reason<'a>(d: &'a Device, attribute: &str) -> &'a str {
    d.unknown_attributes
        .iter()
        .find(|u| u.name == attribute)
        .map(|u| u.reason.as_str())
        .unwrap_or_else(|| panic!("{attribute} is not unknown on {d:#?}"))
}

#[test]
fn an_nvme_ssd_is_hot_with_its_controller_namespace_model_serial_and_wwid() {
    let t = Tree::new();
    nvme_ssd(&t);
    let inventory = t.discover();
    let d = device(&inventory, "nvme0n1");
    assert_eq!(d.path, "/dev/nvme0n1");
    assert_eq!(d.kind, DeviceKind::Nvme);
    assert_eq!(d.kind_reason, "NVMe controller nvme0 (transport pcie)");
    assert_eq!(d.controller.as_deref(), Some("nvme0"));
    assert_eq!(d.namespace_id, Some(1));
    assert_eq!(d.size_bytes, Some(1953525168 * 512));
    assert_eq!(d.rotational, Some(false));
    assert_eq!(d.logical_block_size, Some(512));
    assert_eq!(d.physical_block_size, Some(4096));
    assert_eq!(d.model.as_deref(), Some("Samsung SSD 980 PRO 1TB"));
    assert_eq!(d.serial.as_deref(), Some("S5GXNF0R123456A"));
    assert_eq!(d.wwid.as_deref(), Some("eui.002538b911b2c3d4"));
    assert_eq!(d.suggested_tier, Some(Tier::Hot));
    assert_eq!(d.tier_reason, "NVMe flash");
    assert!(
        d.unknown_attributes.is_empty(),
        "{:?}",
        d.unknown_attributes
    );
}

#[test]
fn a_sas_hdd_is_cold_with_its_serial_from_vpd_page_0x80() {
    let t = Tree::new();
    sas_hdd(&t);
    let inventory = t.discover();
    let d = device(&inventory, "sda");
    assert_eq!(d.kind, DeviceKind::Sas);
    assert!(
        d.kind_reason.contains("end_device-0:0"),
        "{}",
        d.kind_reason
    );
    assert_eq!(d.controller.as_deref(), Some("host0"));
    assert_eq!(d.model.as_deref(), Some("ST4000NM0025"));
    assert_eq!(d.serial.as_deref(), Some("ZC12WXYZ"));
    assert_eq!(d.wwid.as_deref(), Some("naa.5000c500a1b2c3d4"));
    assert_eq!(d.rotational, Some(true));
    assert_eq!(d.suggested_tier, Some(Tier::Cold));
    assert_eq!(d.tier_reason, "rotational (HDD) on SAS");
}

#[test]
fn a_scsi_host_listed_as_a_sas_host_makes_a_sas_disk_without_an_end_device_in_the_path() {
    let t = Tree::new();
    let lun = "devices/pci0000:00/0000:00:03.0/0000:03:00.0/host4/target4:0:0/4:0:0:0";
    t.dir("devices/pci0000:00/0000:00:03.0/0000:03:00.0/host4/sas_host/host4")
        .link(
            "class/sas_host/host4",
            "devices/pci0000:00/0000:00:03.0/0000:03:00.0/host4/sas_host/host4",
        )
        .disk(&format!("{lun}/block/sdf"), "8:80", "100", "0")
        .link(&format!("{lun}/block/sdf/device"), lun);
    let d = device(&t.discover(), "sdf").clone();
    assert_eq!(d.kind, DeviceKind::Sas, "{}", d.kind_reason);
    assert!(
        d.kind_reason.contains("class/sas_host"),
        "{}",
        d.kind_reason
    );
    assert_eq!(d.suggested_tier, Some(Tier::Warm));
}

#[test]
fn a_sata_ssd_is_warm_with_serial_wwid_and_links_from_the_udev_database() {
    let t = Tree::new();
    sata_ssd(&t);
    let inventory = t.discover();
    let d = device(&inventory, "sdb");
    assert_eq!(d.kind, DeviceKind::Sata);
    assert_eq!(d.kind_reason, "libata port ata2 in the device path");
    assert_eq!(d.controller.as_deref(), Some("host1"));
    // sysfs has the model; only udev has the serial and the WWN.
    assert_eq!(d.model.as_deref(), Some("Samsung SSD 870"));
    assert_eq!(d.serial.as_deref(), Some("S5Y1NX0R123456"));
    assert_eq!(d.wwid.as_deref(), Some("0x5002538e40a22954"));
    assert_eq!(
        d.links,
        [
            "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB_S5Y1NX0R123456",
            "/dev/disk/by-id/wwn-0x5002538e40a22954"
        ]
    );
    assert_eq!(d.suggested_tier, Some(Tier::Warm));
    assert_eq!(d.tier_reason, "non-rotational (SSD) on SATA");
    assert!(
        d.unknown_attributes.is_empty(),
        "{:?}",
        d.unknown_attributes
    );
    assert_eq!(inventory.notes, ["smart: absent (SMART not requested)"]);
}

#[test]
fn without_a_udev_database_the_serial_is_unknown_and_a_note_says_why() {
    let t = Tree::new();
    sata_ssd(&t);
    std::fs::remove_dir_all(t.root().join("run")).expect("rm udev");
    let inventory = t.discover();
    let d = device(&inventory, "sdb");
    assert_eq!(d.serial, None);
    let reason = unknown_reason(d, "serial");
    assert!(reason.contains("serial is missing"), "{reason}");
    assert!(reason.contains("no udev property"), "{reason}");
    assert!(
        inventory
            .notes
            .iter()
            .any(|n| n.contains("udev database absent")),
        "{:?}",
        inventory.notes
    );
}

#[test]
fn a_virtio_disk_is_virtio_and_its_tier_reason_names_the_hypervisor() {
    let t = Tree::new();
    virtio_disk(&t);
    let inventory = t.discover();
    let d = device(&inventory, "vda");
    assert_eq!(d.kind, DeviceKind::Virtio);
    assert_eq!(
        d.kind_reason,
        "virtio-blk device virtio1 in the device path"
    );
    assert_eq!(d.controller.as_deref(), Some("virtio1"));
    assert_eq!(d.serial.as_deref(), Some("20166310133103623"));
    assert_eq!(d.size_bytes, Some(256 << 30));
    assert_eq!(d.suggested_tier, Some(Tier::Cold));
    assert!(d.tier_reason.contains("hypervisor"), "{}", d.tier_reason);
    // virtio-blk has no model attribute: unknown, with the places tried.
    assert!(unknown_reason(d, "model").contains("device/model is missing"));
}

#[test]
fn missing_attributes_are_unknown_with_the_reason_and_the_tier_stays_unknown() {
    let t = Tree::new();
    let lun = "devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0";
    let sdc = format!("{lun}/block/sdc");
    t.disk(&sdc, "8:32", "100", "0")
        .link(&format!("{sdc}/device"), lun);
    std::fs::remove_file(t.root().join(format!("{sdc}/queue/rotational"))).expect("rm");
    std::fs::remove_file(t.root().join(format!("{sdc}/size"))).expect("rm");
    let inventory = t.discover();
    let d = device(&inventory, "sdc");
    assert_eq!(d.rotational, None);
    assert_eq!(d.size_bytes, None);
    assert!(unknown_reason(d, "rotational").ends_with("queue/rotational is missing"));
    assert!(unknown_reason(d, "sizeBytes").ends_with("sdc/size is missing"));
    assert_eq!(d.suggested_tier, None);
    assert_eq!(
        d.tier_reason,
        "rotational flag unknown on SATA: cannot tell an SSD from an HDD"
    );
    // Absent, not zero, on the wire.
    let json = serde_json::to_value(d).expect("json");
    assert!(
        json.get("rotational").is_none() && json.get("sizeBytes").is_none(),
        "{json}"
    );
}

#[test]
fn a_directory_where_an_attribute_file_should_be_is_an_unreadable_attribute() {
    let t = Tree::new();
    let lun = "devices/pci0000:00/0000:00:1f.2/ata4/host3/target3:0:0/3:0:0:0";
    let sdd = format!("{lun}/block/sdd");
    t.disk(&sdd, "8:48", "100", "1");
    let rotational = t.root().join(format!("{sdd}/queue/rotational"));
    std::fs::remove_file(&rotational).expect("rm");
    std::fs::create_dir(&rotational).expect("dir");
    let inventory = t.discover();
    let d = device(&inventory, "sdd");
    assert_eq!(d.rotational, None);
    let reason = unknown_reason(d, "rotational");
    assert!(reason.starts_with("cannot read"), "{reason}");
    assert!(reason.contains("directory"), "{reason}");
    assert_eq!(d.suggested_tier, None);
}

#[test]
fn a_chmod_000_attribute_is_unknown_unless_the_process_can_read_it_anyway() {
    let t = Tree::new();
    virtio_disk(&t);
    let size = t.root().join(format!("{VIRTIO}/block/vda/size"));
    std::fs::set_permissions(&size, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    // Root (CAP_DAC_OVERRIDE) reads a mode-000 file; everyone else gets EACCES. Ask the
    // kernel which one we are rather than guessing from the uid.
    let readable = std::fs::read(&size).is_ok();
    let inventory = t.discover();
    let d = device(&inventory, "vda");
    if readable {
        assert_eq!(d.size_bytes, Some(256 << 30));
    } else {
        assert_eq!(d.size_bytes, None);
        let reason = unknown_reason(d, "sizeBytes");
        assert!(reason.contains("Permission denied"), "{reason}");
    }
}

#[test]
fn a_zero_size_disk_is_size_zero_not_unknown() {
    let t = Tree::new();
    let lun = "devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0";
    t.disk(&format!("{lun}/block/sde"), "8:64", "0", "1")
        .link(&format!("{lun}/block/sde/device"), lun);
    let inventory = t.discover();
    let d = device(&inventory, "sde");
    assert_eq!(d.size_bytes, Some(0));
    assert!(d.unknown_attributes.iter().all(|u| u.name != "sizeBytes"));
    assert_eq!(d.kind, DeviceKind::Unknown);
    assert!(
        d.kind_reason.starts_with("USB-attached (usb1)"),
        "{}",
        d.kind_reason
    );
    assert_eq!(d.suggested_tier, Some(Tier::Cold));
}

#[test]
fn a_value_that_is_not_a_number_is_unknown_with_the_value_shown() {
    let t = Tree::new();
    virtio_disk(&t);
    t.file(&format!("{VIRTIO}/block/vda/size"), "lots\n")
        .file(&format!("{VIRTIO}/block/vda/queue/rotational"), "2\n");
    let d = device(&t.discover(), "vda").clone();
    assert_eq!(d.size_bytes, None);
    assert!(unknown_reason(&d, "sizeBytes").ends_with("\"lots\" is not a number"));
    assert!(unknown_reason(&d, "rotational").contains("is 2, not 0 or 1"));
}

#[test]
fn a_dangling_block_link_is_reported_and_the_other_devices_still_are() {
    let t = Tree::new();
    virtio_disk(&t);
    t.link("block/sdz", "devices/gone/block/sdz");
    let inventory = t.discover();
    assert_eq!(device(&inventory, "vda").kind, DeviceKind::Virtio);
    let d = device(&inventory, "sdz");
    assert_eq!(d.kind, DeviceKind::Unknown);
    assert!(
        d.kind_reason.starts_with("cannot resolve"),
        "{}",
        d.kind_reason
    );
    assert!(unknown_reason(d, "dev").contains("missing"));
    assert_eq!(d.suggested_tier, None);
}

#[test]
fn loop_zram_and_dm_devices_are_skipped_unless_all_devices_are_asked_for() {
    let t = Tree::new();
    virtio_disk(&t);
    t.disk("devices/virtual/block/loop0", "7:0", "0", "1")
        .disk("devices/virtual/block/zram0", "253:0", "0", "0")
        .disk("devices/virtual/block/dm-0", "252:0", "2048", "0")
        .disk("devices/virtual/block/md0", "9:0", "2048", "0");
    let inventory = t.discover();
    let names: Vec<&str> = inventory.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["vda"]);
    let skipped: Vec<(&str, &str)> = inventory
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("dm-0", "device-mapper device"),
            ("loop0", "loop device"),
            ("md0", "virtual block device (under devices/virtual)"),
            ("zram0", "compressed RAM disk (zram)"),
        ]
    );
    let mut options = t.options();
    options.include_virtual = true;
    let all = discovery::discover(&options).expect("discover");
    assert_eq!(all.devices.len(), 5);
    assert!(all.skipped.is_empty());
    assert_eq!(device(&all, "loop0").kind_reason, "virtual device");
}

#[test]
fn a_sysfs_root_without_block_is_a_clear_error() {
    let t = Tree::new();
    let e = discovery::discover(&t.options()).expect_err("no block/");
    assert!(matches!(e, DiscoveryError::ListBlockDevices { .. }), "{e}");
    assert!(
        e.to_string().contains("cannot list block devices in"),
        "{e}"
    );
}

#[test]
fn a_partition_walks_up_to_its_disk() {
    let t = Tree::new();
    sas_hdd(&t);
    let part = format!("{SAS_LUN}/block/sda/sda1");
    t.file(&format!("{part}/partition"), "1\n")
        .file(&format!("{part}/dev"), "8:1\n")
        .link("dev/block/8:1", &part);
    assert_eq!(discovery::disk_of(t.root(), 8, 1).expect("disk"), "sda");
    assert_eq!(discovery::disk_of(t.root(), 8, 0).expect("disk"), "sda");
    let e = discovery::disk_of(t.root(), 8, 99).expect_err("no such device");
    assert!(e.to_string().contains("no block device 8:99"), "{e}");
}

// ---- SMART ----

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smart")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn smart_data(name: &str) -> couchestor_core::api::SmartData {
    match smart::parse(&fixture(name)) {
        SmartOutcome::Data(d) => d,
        SmartOutcome::Absent(reason) => panic!("{name}: absent: {reason}"),
    }
}

#[test]
fn nvme_smart_gives_health_temperature_hours_media_errors_and_percentage_used() {
    let d = smart_data("nvme.json");
    assert_eq!(d.passed, Some(true));
    assert_eq!(d.temperature_celsius, Some(38));
    assert_eq!(d.power_on_hours, Some(5321));
    assert_eq!(d.media_errors, Some(2));
    assert_eq!(d.percentage_used, Some(3));
}

#[test]
fn ata_smart_media_errors_are_reported_uncorrectables_and_wear_is_absent_without_statistics() {
    let d = smart_data("sata-hdd.json");
    assert_eq!(d.passed, Some(true));
    assert_eq!(d.temperature_celsius, Some(36));
    assert_eq!(d.power_on_hours, Some(36055));
    assert_eq!(d.media_errors, Some(1));
    assert_eq!(d.percentage_used, None);
}

#[test]
fn ata_device_statistics_give_percentage_used_and_a_failed_health_is_kept() {
    let d = smart_data("sata-ssd-worn.json");
    assert_eq!(d.passed, Some(false));
    assert_eq!(d.percentage_used, Some(104));
    assert_eq!(d.media_errors, None);
    assert_eq!(d.power_on_hours, Some(20112));
}

#[test]
fn scsi_smart_sums_uncorrected_errors_over_read_write_and_verify() {
    let d = smart_data("sas-hdd.json");
    assert_eq!(d.passed, Some(true));
    assert_eq!(d.temperature_celsius, Some(31));
    assert_eq!(d.power_on_hours, Some(41234));
    assert_eq!(d.media_errors, Some(3));
}

#[test]
fn a_device_smartctl_cannot_handle_is_absent_with_smartctls_own_message() {
    assert_eq!(
        smart::parse(&fixture("virtio-unsupported.json")),
        SmartOutcome::Absent(
            "smartctl reported no SMART data (exit status 1): /dev/vda: Unable to detect device type"
                .into()
        )
    );
    let SmartOutcome::Absent(reason) = smart::parse(b"Segmentation fault") else {
        panic!("garbage parsed as SMART data");
    };
    assert!(
        reason.starts_with("smartctl output is not JSON"),
        "{reason}"
    );
}

#[test]
fn without_smartctl_every_device_says_smart_absent_because_not_installed() {
    let t = Tree::new();
    virtio_disk(&t);
    nvme_ssd(&t);
    let mut options = t.options();
    options.smart = SmartSource::Smartctl {
        program: "couchestor-test-no-such-smartctl".into(),
        timeout: Duration::from_secs(5),
    };
    let inventory = discovery::discover(&options).expect("discover");
    for d in &inventory.devices {
        assert_eq!(d.smart, None);
        let reason = d.smart_absent_reason.as_deref().expect("a reason");
        assert!(reason.starts_with("smartctl not installed"), "{reason}");
        assert!(reason.contains("install smartmontools"), "{reason}");
    }
    assert!(
        inventory
            .notes
            .iter()
            .any(|n| n.starts_with("smart: absent (smartctl not installed")),
        "{:?}",
        inventory.notes
    );
    let json = serde_json::to_value(&inventory.devices[0]).expect("json");
    assert!(json.get("smart").is_none(), "{json}");
}

/// A stand-in smartctl (a shell script) checks the plumbing around the program: the
/// arguments it gets, its output used per device, and the timeout. Parsing is covered by
/// the committed outputs above.
#[test]
fn smartctl_is_run_per_device_with_json_and_standby_flags_and_killed_after_the_timeout() {
    let t = Tree::new();
    nvme_ssd(&t);
    let bin = tempfile::tempdir().expect("tempdir");
    let answer = bin.path().join("answer.json");
    std::fs::write(&answer, fixture("nvme.json")).expect("write");
    let args_log = bin.path().join("args");
    let script = bin.path().join("smartctl");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\ncat {}\n",
            args_log.display(),
            answer.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut options = t.options();
    options.smart = SmartSource::Smartctl {
        program: script.clone().into(),
        timeout: Duration::from_secs(10),
    };
    let inventory = discovery::discover(&options).expect("discover");
    let d = device(&inventory, "nvme0n1");
    assert_eq!(d.smart.as_ref().and_then(|s| s.media_errors), Some(2));
    assert_eq!(
        std::fs::read_to_string(&args_log).expect("args"),
        "--json -a -n standby /dev/nvme0n1\n"
    );

    std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").expect("script");
    options.smart = SmartSource::Smartctl {
        program: script.into(),
        timeout: Duration::from_millis(300),
    };
    let started = std::time::Instant::now();
    let inventory = discovery::discover(&options).expect("discover");
    assert!(started.elapsed() < Duration::from_secs(10));
    let reason = device(&inventory, "nvme0n1").smart_absent_reason.clone();
    assert_eq!(
        reason.as_deref(),
        Some("smartctl did not answer within 300ms")
    );
}

// ---- this machine ----

/// `major:minor` of the filesystem mounted at `/`, from `/proc/self/mountinfo`.
fn root_mount() -> ((u32, u32), String) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(4) == Some(&"/") {
            let dev = discovery::parse_major_minor(fields[2]).expect("major:minor");
            let source = line
                .split(" - ")
                .nth(1)
                .and_then(|rest| rest.split(' ').nth(1))
                .unwrap_or("?");
            return (dev, source.to_owned());
        }
    }
    panic!("no / in /proc/self/mountinfo");
}

#[test]
fn discovery_on_this_machines_sys_finds_the_disk_backing_root() {
    let ((major, minor), source) = root_mount();
    assert!(
        major != 0,
        "/ is {source} ({major}:{minor}), not a block device: this test needs a machine \
         (or VM) whose root filesystem is on a disk"
    );
    let sys = Path::new("/sys");
    let disk = discovery::disk_of(sys, major, minor).expect("root disk in /sys");
    let mut options = Options::host();
    options.smart = SmartSource::Off;
    let inventory = discovery::discover(&options).expect("discover /sys");
    let d = device(&inventory, &disk);
    assert_eq!(d.path, format!("/dev/{disk}"));
    assert!(d.size_bytes.is_some_and(|s| s > 0), "{d:#?}");
    assert!(d.rotational.is_some(), "{d:#?}");
    assert!(d.logical_block_size.is_some_and(|b| b >= 512), "{d:#?}");
    assert!(!d.tier_reason.is_empty());
    // The kernel's own count agrees: /proc/partitions has 1 KiB blocks.
    let partitions = std::fs::read_to_string("/proc/partitions").expect("partitions");
    let blocks: u64 = partitions
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some(disk.as_str()))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .expect("disk in /proc/partitions");
    assert_eq!(d.size_bytes, Some(blocks * 1024));
}

// ---- the scan binary ----

fn scan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_couchestor-node-agent"))
        .arg("scan")
        .args(args)
        .output()
        .expect("run couchestor-node-agent scan")
}

fn tree_args(t: &Tree) -> Vec<String> {
    let root: PathBuf = t.root().to_path_buf();
    vec![
        "--sysfs-root".into(),
        root.display().to_string(),
        "--udev-root".into(),
        root.join("run/udev").display().to_string(),
    ]
}

#[test]
fn scan_json_over_a_fixture_tree_lists_every_disk_with_its_tier() {
    let t = Tree::new();
    nvme_ssd(&t);
    sas_hdd(&t);
    sata_ssd(&t);
    virtio_disk(&t);
    t.disk("devices/virtual/block/loop0", "7:0", "0", "1");
    let mut args = tree_args(&t);
    args.extend(["--json".into(), "--no-smart".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let devices: Vec<Device> =
        serde_json::from_value(json["devices"].clone()).expect("devices as published");
    let tiers: Vec<(&str, Option<Tier>)> = devices
        .iter()
        .map(|d| (d.name.as_str(), d.suggested_tier))
        .collect();
    assert_eq!(
        tiers,
        [
            ("nvme0n1", Some(Tier::Hot)),
            ("sda", Some(Tier::Cold)),
            ("sdb", Some(Tier::Warm)),
            ("vda", Some(Tier::Cold)),
        ]
    );
    assert_eq!(json["skipped"][0]["name"], "loop0");
    assert_eq!(
        devices[0].smart_absent_reason.as_deref(),
        Some("SMART not requested")
    );

    // --all brings the loop device in.
    let mut all = args.clone();
    all.push("--all");
    let out = scan(&all);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["devices"].as_array().map(Vec::len), Some(5));
}

#[test]
fn scan_prints_a_table_with_one_row_per_disk() {
    let t = Tree::new();
    nvme_ssd(&t);
    sata_ssd(&t);
    let mut args = tree_args(&t);
    args.push("--no-smart".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    for header in [
        "DEVICE",
        "SIZE",
        "TRANSPORT",
        "ROTATIONAL",
        "MODEL",
        "SERIAL",
        "TIER",
        "REASON",
        "SMART",
    ] {
        assert!(lines[0].contains(header), "{}", lines[0]);
    }
    assert!(lines[1].starts_with("nvme0n1"), "{text}");
    assert!(
        lines[1].contains("931.5 GiB") && lines[1].contains("NVMe") && lines[1].contains("hot")
    );
    assert!(lines[1].ends_with("absent (SMART not requested)"), "{text}");
    assert!(
        lines[2].starts_with("sdb") && lines[2].contains("S5Y1NX0R123456"),
        "{text}"
    );
}

#[test]
fn scan_of_a_sysfs_root_without_block_devices_fails_with_the_path() {
    let t = Tree::new();
    let args = tree_args(&t);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scan(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot list block devices in"), "{stderr}");
    assert!(stderr.contains(&t.root().display().to_string()), "{stderr}");
}

#[test]
fn scan_json_on_this_machine_parses_and_lists_the_root_disk() {
    let ((major, minor), _) = root_mount();
    let disk = discovery::disk_of(Path::new("/sys"), major, minor).expect("root disk");
    let out = scan(&["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let devices: Vec<Device> = serde_json::from_value(json["devices"].clone()).expect("devices");
    let d = devices
        .iter()
        .find(|d| d.name == disk)
        .expect("root disk listed");
    // With or without smartmontools, SMART is either data or an explicit reason.
    assert!(
        d.smart.is_some() || d.smart_absent_reason.is_some(),
        "{d:#?}"
    );
}

#[test]
fn the_installed_smartctl_answers_for_the_root_disk_in_json_that_parses() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let installed = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join("smartctl").is_file());
    assert!(
        installed,
        "smartctl not found: install smartmontools (listed in scripts/apt-packages; \
         ./scripts/install-packages installs it)"
    );
    let ((major, minor), _) = root_mount();
    let disk = discovery::disk_of(Path::new("/sys"), major, minor).expect("root disk");
    let mut options = Options::host();
    options.smart = SmartSource::Smartctl {
        program: smartctl_program().into(),
        timeout: Duration::from_secs(60),
    };
    let inventory = discovery::discover(&options).expect("discover /sys");
    let d = device(&inventory, &disk);
    match (&d.smart, &d.smart_absent_reason) {
        // A disk with SMART (a physical machine).
        (Some(smart), None) => assert_ne!(smart, &couchestor_core::api::SmartData::default()),
        // A disk without (a VM's virtio disk): smartctl ran, answered in JSON, and its
        // own message is the reason.
        (None, Some(reason)) => {
            assert!(
                reason.starts_with("smartctl reported no SMART data (exit status"),
                "{reason}"
            );
        }
        other => panic!("SMART neither data nor an absent reason: {other:?}"),
    }
}

fn smartctl_program() -> PathBuf {
    ["/usr/sbin/smartctl", "/sbin/smartctl", "/usr/bin/smartctl"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("smartctl"))
}
