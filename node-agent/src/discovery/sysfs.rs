//! Block devices as sysfs shows them, under a root that is a parameter.
//!
//! `<root>/block/<name>` is (on a real system) a symlink into `<root>/devices/...`; the
//! resolved path tells the transport: an `nvme` class device, a libata port (`ata2`), a
//! SAS end device (`end_device-0:1`), a virtio device (`virtio1`). Attributes are the
//! kernel's: `size` (512-byte sectors, whatever the logical block size), `dev`,
//! `queue/{rotational,logical_block_size,physical_block_size}`, `device/{model,serial,
//! wwid,vpd_pg80,vpd_pg89}`, `serial`, `wwid`, `nsid`, and `<root>/class/nvme/<ctrl>/`.

use std::fs;
use std::path::{Component, Path, PathBuf};

use couchestor_core::api::{DeviceKind, UnknownAttribute};

use super::DiscoveryError;

/// One device as sysfs describes it; `Err` fields carry the reason they are unknown.
#[derive(Debug, Clone)]
pub struct RawDevice {
    pub name: String,
    pub dev: Option<(u32, u32)>,
    /// Why this device is virtual (skipped unless asked for); `None` for hardware.
    pub virtual_reason: Option<String>,
    pub kind: DeviceKind,
    pub kind_reason: String,
    pub controller: Option<String>,
    pub namespace_id: Option<u32>,
    pub rotational: Option<bool>,
    pub size_bytes: Option<u64>,
    pub logical_block_size: Option<u32>,
    pub physical_block_size: Option<u32>,
    pub model: Result<String, String>,
    pub serial: Result<String, String>,
    pub wwid: Result<String, String>,
    /// Attributes that could not be read (numbers and flags; the strings above are added
    /// by the caller once udev had its chance).
    pub unknown: Vec<UnknownAttribute>,
}

/// The names under `<root>/block`, sorted.
pub fn block_device_names(root: &Path) -> Result<Vec<String>, DiscoveryError> {
    let dir = root.join("block");
    let entries = fs::read_dir(&dir).map_err(|source| DiscoveryError::ListBlockDevices {
        path: dir.clone(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Reads everything sysfs says about block device `name`. Never fails: what cannot be
/// read is recorded with its reason.
pub fn read_device(root: &Path, name: &str) -> RawDevice {
    let block = root.join("block").join(name);
    let mut unknown = Vec::new();
    let resolved = fs::canonicalize(&block);
    let components = match &resolved {
        Ok(path) => relative_components(root, path),
        Err(_) => Vec::new(),
    };
    let virtual_reason = virtual_reason(name, &components);
    let dev = record(
        &mut unknown,
        "dev",
        text(&block.join("dev")).and_then(|t| {
            super::parse_major_minor(&t).ok_or_else(|| not_a(&block.join("dev"), &t, "major:minor"))
        }),
    );
    let size_bytes = record(
        &mut unknown,
        "sizeBytes",
        number::<u64>(&block.join("size")).and_then(|sectors| {
            sectors
                .checked_mul(512)
                .ok_or_else(|| format!("{sectors} sectors overflow a byte count"))
        }),
    );
    let rotational = record(
        &mut unknown,
        "rotational",
        number::<u8>(&block.join("queue/rotational")).and_then(|r| match r {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("queue/rotational is {other}, not 0 or 1")),
        }),
    );
    let logical_block_size = record(
        &mut unknown,
        "logicalBlockSize",
        number(&block.join("queue/logical_block_size")),
    );
    let physical_block_size = record(
        &mut unknown,
        "physicalBlockSize",
        number(&block.join("queue/physical_block_size")),
    );
    let mut device = RawDevice {
        name: name.to_owned(),
        dev,
        virtual_reason,
        kind: DeviceKind::Unknown,
        kind_reason: String::new(),
        controller: None,
        namespace_id: None,
        rotational,
        size_bytes,
        logical_block_size,
        physical_block_size,
        model: first(&[block.join("device/model")]),
        serial: first(&[block.join("serial"), block.join("device/serial")]),
        wwid: first(&[block.join("wwid"), block.join("device/wwid")]),
        unknown,
    };
    if let Err(e) = &resolved {
        device.kind_reason = format!("cannot resolve {}: {e}", block.display());
        return device;
    }
    if device.virtual_reason.is_some() {
        device.kind_reason = "virtual device".into();
        return device;
    }
    transport(root, &block, &components, &mut device);
    device
}

/// Decides NVMe / SATA / SAS / virtio from the resolved path and a few attributes, and
/// reads the transport-specific attributes (NVMe controller, SCSI VPD serial).
fn transport(root: &Path, block: &Path, components: &[String], device: &mut RawDevice) {
    let has = |pred: &dyn Fn(&str) -> bool| components.iter().find(|c| pred(c.as_str())).cloned();
    let scsi_host = has(&|c: &str| numbered(c, "host"));
    if let Some(controller) = nvme_controller(&device.name, block, components) {
        let class = root.join("class/nvme").join(&controller);
        let transport = text(&class.join("transport")).unwrap_or_else(|_| "unknown".into());
        device.namespace_id = text(&block.join("nsid"))
            .ok()
            .and_then(|t| t.parse().ok())
            .or_else(|| {
                let (_, ns) = device.name.rsplit_once('n')?;
                ns.parse().ok()
            });
        device.kind = DeviceKind::Nvme;
        device.kind_reason = format!("NVMe controller {controller} (transport {transport})");
        if device.model.is_err() {
            device.model = first(&[class.join("model")]);
        }
        if device.serial.is_err() {
            device.serial = first(&[class.join("serial")]);
        }
        device.controller = Some(controller);
        return;
    }
    if device.serial.is_err() {
        // SCSI disks (SATA through libata, SAS) carry their serial in VPD page 0x80.
        if let Ok(serial) = vpd_unit_serial(&block.join("device/vpd_pg80")) {
            device.serial = Ok(serial);
        }
    }
    device.controller = scsi_host.clone();
    if let Some(port) = has(&|c: &str| numbered(c, "ata")) {
        device.kind = DeviceKind::Sata;
        device.kind_reason = format!("libata port {port} in the device path");
    } else if block.join("device/vpd_pg89").exists() {
        device.kind = DeviceKind::Sata;
        device.kind_reason =
            "ATA Information VPD page (device/vpd_pg89): an ATA disk behind a SCSI/SAS HBA".into();
    } else if let Some(end) = has(&|c: &str| c.starts_with("end_device-")) {
        device.kind = DeviceKind::Sas;
        device.kind_reason = format!("SAS end device {end} in the device path");
    } else if let Some(host) = scsi_host
        .as_ref()
        .filter(|h| root.join("class/sas_host").join(h).exists())
    {
        device.kind = DeviceKind::Sas;
        device.kind_reason = format!("SCSI host {host} is a SAS host (class/sas_host)");
    } else if let Some(virtio) = has(&|c: &str| numbered(c, "virtio")) {
        device.kind = DeviceKind::Virtio;
        let flavour = if scsi_host.is_some() {
            "virtio-scsi"
        } else {
            "virtio-blk"
        };
        device.kind_reason = format!("{flavour} device {virtio} in the device path");
        if scsi_host.is_none() {
            device.controller = Some(virtio);
        }
    } else if let Some(usb) = has(&|c: &str| numbered(c, "usb")) {
        device.kind_reason = format!("USB-attached ({usb}): transport not classified");
    } else {
        device.kind_reason = format!(
            "no NVMe, ATA, SAS or virtio component in the device path /{}",
            components.join("/")
        );
    }
}

/// The NVMe controller of an NVMe namespace: the `device` link's target when it is a
/// controller (`nvme0`), else the controller number in the name (`nvme0n1` → `nvme0`,
/// `nvme1c2n1` → `nvme2`; for a native-multipath head `nvme1n1` the number is the
/// subsystem's).
fn nvme_controller(name: &str, block: &Path, components: &[String]) -> Option<String> {
    let by_name = name
        .strip_prefix("nvme")
        .and_then(|rest| rest.split_once('n'))
        .filter(|(ctrl, ns)| {
            !ctrl.is_empty()
                && !ns.is_empty()
                && ns.bytes().all(|b| b.is_ascii_digit())
                && ctrl.bytes().all(|b| b.is_ascii_digit() || b == b'c')
        })
        // `nvme<subsystem>c<controller>n<ns>` is one path of a multipath namespace.
        .map(|(ctrl, _)| format!("nvme{}", ctrl.split_once('c').map_or(ctrl, |(_, c)| c)));
    let in_path = components
        .iter()
        .any(|c| c == "nvme" || c.starts_with("nvme-subsys"));
    if by_name.is_none() && !in_path {
        return None;
    }
    fs::read_link(block.join("device"))
        .ok()
        .and_then(|t| t.file_name()?.to_str().map(str::to_owned))
        .filter(|t| numbered(t, "nvme"))
        .or(by_name)
        .or_else(|| Some("unknown".into()))
}

/// Why a device is virtual: loop, ram, zram, dm-N, or anything under `devices/virtual`.
fn virtual_reason(name: &str, components: &[String]) -> Option<String> {
    for (prefix, what) in [
        ("loop", "loop device"),
        ("ram", "RAM disk"),
        ("zram", "compressed RAM disk (zram)"),
        ("dm-", "device-mapper device"),
    ] {
        if numbered(name, prefix) {
            return Some(what.into());
        }
    }
    let under_virtual = components
        .windows(2)
        .any(|w| w[0] == "devices" && w[1] == "virtual");
    under_virtual.then(|| "virtual block device (under devices/virtual)".into())
}

/// `prefix` followed by at least one digit and nothing else.
fn numbered(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

fn relative_components(root: &Path, path: &Path) -> Vec<String> {
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    path.strip_prefix(&root)
        .unwrap_or(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// An attribute's text, trimmed; the reason when it is missing, unreadable or empty.
pub(super) fn text(path: &Path) -> Result<String, String> {
    match fs::read(path) {
        Ok(bytes) => {
            let value = String::from_utf8_lossy(&bytes).trim().to_owned();
            if value.is_empty() {
                Err(format!("{} is empty", path.display()))
            } else {
                Ok(value)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{} is missing", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn number<T: std::str::FromStr>(path: &Path) -> Result<T, String> {
    let t = text(path)?;
    t.parse().map_err(|_| not_a(path, &t, "number"))
}

fn not_a(path: &Path, value: &str, what: &str) -> String {
    let shown: String = value.chars().take(40).collect();
    format!("{}: {shown:?} is not a {what}", path.display())
}

/// The first path that reads; otherwise every reason, joined.
fn first(paths: &[PathBuf]) -> Result<String, String> {
    let mut reasons = Vec::new();
    for path in paths {
        match text(path) {
            Ok(v) => return Ok(v),
            Err(r) => reasons.push(r),
        }
    }
    Err(reasons.join("; "))
}

fn record<T>(
    unknown: &mut Vec<UnknownAttribute>,
    name: &str,
    value: Result<T, String>,
) -> Option<T> {
    match value {
        Ok(v) => Some(v),
        Err(reason) => {
            unknown.push(UnknownAttribute {
                name: name.into(),
                reason,
            });
            None
        }
    }
}

/// The unit serial number from VPD page 0x80: a 4-byte header (page code at byte 1,
/// big-endian length at bytes 2..4), then ASCII.
fn vpd_unit_serial(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() < 4 || bytes[1] != 0x80 {
        return Err(format!("{} is not VPD page 0x80", path.display()));
    }
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let body = bytes.get(4..4 + len).unwrap_or(&bytes[4..]);
    let serial = String::from_utf8_lossy(body).trim().to_owned();
    if serial.is_empty() {
        Err(format!("{} holds an empty serial", path.display()))
    } else {
        Ok(serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names_need_digits_after_the_prefix() {
        assert!(numbered("loop0", "loop"));
        assert!(numbered("dm-12", "dm-"));
        assert!(!numbered("loop", "loop"));
        assert!(!numbered("ramblock", "ram"));
        assert!(!numbered("zram0", "ram"));
    }

    #[test]
    fn virtual_devices_are_named_or_under_devices_virtual() {
        assert_eq!(virtual_reason("loop3", &[]).as_deref(), Some("loop device"));
        assert_eq!(
            virtual_reason("zram0", &[]).as_deref(),
            Some("compressed RAM disk (zram)")
        );
        let md: Vec<String> = ["devices", "virtual", "block", "md0"]
            .map(String::from)
            .to_vec();
        assert!(virtual_reason("md0", &md).is_some());
        let sda: Vec<String> = ["devices", "pci0000:00", "ata1", "block", "sda"]
            .map(String::from)
            .to_vec();
        assert_eq!(virtual_reason("sda", &sda), None);
    }

    #[test]
    fn nvme_namespace_names_give_their_controller() {
        let p = Path::new("/nonexistent/block/x");
        assert_eq!(nvme_controller("nvme0n1", p, &[]).as_deref(), Some("nvme0"));
        assert_eq!(
            nvme_controller("nvme1c2n3", p, &[]).as_deref(),
            Some("nvme2")
        );
        assert_eq!(nvme_controller("nvme0", p, &[]), None);
        assert_eq!(nvme_controller("sda", p, &[]), None);
    }
}
