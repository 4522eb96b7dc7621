//! Hardware discovery: the node's block devices, read from sysfs, the udev database and
//! `smartctl --json` (issue #6). What is read from where: `docs/discovery.md`.
//!
//! Every root is a parameter ([`Options`]): the agent passes `/sys` and `/run/udev`, tests
//! pass fixture trees. Nothing here panics on an odd tree: an attribute that cannot be
//! read is reported in [`Device::unknown_attributes`] with the reason, never as zero.
//!
//! - [`sysfs`]: block devices, their attributes and transport (NVMe, SAS, SATA, virtio);
//! - [`udev`]: properties and stable links from `<udev root>/data/b<major>:<minor>`;
//! - [`smart`]: `smartctl --json` output, or why there is none.
//!
//! The suggested tier comes from [`couchestor_core::device_tier::suggest`].

pub mod smart;
pub mod sysfs;
pub mod udev;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use couchestor_core::api::{Device, UnknownAttribute};
use couchestor_core::device_tier;
use serde::Serialize;

pub use smart::SmartOutcome;

/// Where to look and what to include.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sysfs mount (`/sys`).
    pub sysfs_root: PathBuf,
    /// The udev runtime directory (`/run/udev`); its `data/` holds the database.
    pub udev_root: PathBuf,
    /// Include loop, ram, zram and device-mapper (and other `devices/virtual`) devices.
    pub include_virtual: bool,
    pub smart: SmartSource,
}

impl Options {
    /// The host's own trees, without virtual devices, SMART from `smartctl` on `PATH`.
    pub fn host() -> Self {
        Options {
            sysfs_root: PathBuf::from("/sys"),
            udev_root: PathBuf::from("/run/udev"),
            include_virtual: false,
            smart: SmartSource::Smartctl {
                program: OsString::from("smartctl"),
                timeout: Duration::from_secs(30),
            },
        }
    }
}

/// Where SMART data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmartSource {
    /// Not asked for (fixture trees, `scan --no-smart`): reported as absent with that reason.
    Off,
    /// Run `program --json -a -n standby /dev/<name>` (a bare name is looked up in `PATH`).
    Smartctl {
        program: OsString,
        timeout: Duration,
    },
}

/// What discovery found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// Devices, by kernel name.
    pub devices: Vec<Device>,
    /// Devices left out (virtual ones unless asked for), each with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// Whole-inventory remarks (no udev database, no smartctl).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot list block devices in {path}: {source}")]
    ListBlockDevices {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no block device {major}:{minor} in {path}: {source}")]
    NoSuchDevice {
        major: u32,
        minor: u32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not under {block}")]
    NotABlockDevice { path: PathBuf, block: String },
}

/// Reads every block device under `<sysfs root>/block`. Fails only when that directory
/// cannot be listed; everything else becomes an unknown attribute or a note.
pub fn discover(options: &Options) -> Result<Inventory, DiscoveryError> {
    let mut inventory = Inventory::default();
    let names = sysfs::block_device_names(&options.sysfs_root)?;
    let udev_data = options.udev_root.join("data");
    if !udev_data.is_dir() {
        inventory.notes.push(format!(
            "udev database absent ({} is not a directory): no udev properties",
            udev_data.display()
        ));
    }
    let smartctl = smart::Smartctl::resolve(&options.smart);
    if let Err(reason) = &smartctl {
        inventory.notes.push(format!("smart: absent ({reason})"));
    }
    for name in names {
        let raw = sysfs::read_device(&options.sysfs_root, &name);
        if let Some(reason) = &raw.virtual_reason
            && !options.include_virtual
        {
            inventory.skipped.push(Skipped {
                name,
                reason: reason.clone(),
            });
            continue;
        }
        let udev = match raw.dev {
            Some((major, minor)) if udev_data.is_dir() => {
                udev::read(&options.udev_root, major, minor)
            }
            _ => Ok(None),
        };
        inventory
            .devices
            .push(assemble(raw, udev, smartctl.as_ref()));
    }
    Ok(inventory)
}

/// Merges sysfs, udev and SMART into the published [`Device`].
fn assemble(
    raw: sysfs::RawDevice,
    udev: Result<Option<udev::Record>, String>,
    smartctl: Result<&smart::Smartctl, &String>,
) -> Device {
    let mut unknown = raw.unknown;
    let record = match udev {
        Ok(record) => record,
        Err(reason) => {
            unknown.push(UnknownAttribute {
                name: "udev".into(),
                reason,
            });
            None
        }
    };
    let property = |key: &str| record.as_ref().and_then(|r| r.property(key));
    let mut kind = raw.kind;
    let mut kind_reason = raw.kind_reason;
    if kind == couchestor_core::api::DeviceKind::Unknown
        && (property("ID_BUS") == Some("ata") || property("ID_ATA") == Some("1"))
    {
        kind = couchestor_core::api::DeviceKind::Sata;
        kind_reason = "udev says ATA (ID_BUS=ata / ID_ATA=1)".into();
    }
    let model = fallback(raw.model, property("ID_MODEL"), "model", &mut unknown);
    let serial = fallback(
        raw.serial,
        property("ID_SERIAL_SHORT"),
        "serial",
        &mut unknown,
    );
    let wwid = fallback(raw.wwid, property("ID_WWN"), "wwid", &mut unknown);
    let path = format!("/dev/{}", raw.name.replace('!', "/"));
    let (smart, smart_absent_reason) = match smartctl {
        Ok(program) => match program.read(&path) {
            SmartOutcome::Data(data) => (Some(data), None),
            SmartOutcome::Absent(reason) => (None, Some(reason)),
        },
        Err(reason) => (None, Some(reason.clone())),
    };
    let suggestion = device_tier::suggest(kind, raw.rotational);
    Device {
        name: raw.name,
        path,
        kind,
        kind_reason,
        controller: raw.controller,
        namespace_id: raw.namespace_id,
        rotational: raw.rotational,
        size_bytes: raw.size_bytes,
        logical_block_size: raw.logical_block_size,
        physical_block_size: raw.physical_block_size,
        model,
        serial,
        wwid,
        links: record.map(|r| r.links).unwrap_or_default(),
        smart,
        smart_absent_reason,
        suggested_tier: suggestion.tier,
        tier_reason: suggestion.reason,
        unknown_attributes: unknown,
    }
}

/// The sysfs value, else the udev property; when both are missing, one unknown entry
/// naming every place that was tried.
fn fallback(
    sysfs: Result<String, String>,
    udev: Option<&str>,
    name: &str,
    unknown: &mut Vec<UnknownAttribute>,
) -> Option<String> {
    match (sysfs, udev) {
        (Ok(value), _) => Some(value),
        (Err(_), Some(value)) if !value.is_empty() => Some(value.to_owned()),
        (Err(reason), _) => {
            unknown.push(UnknownAttribute {
                name: name.into(),
                reason: format!("{reason}; no udev property either"),
            });
            None
        }
    }
}

/// The kernel name of the whole disk holding block device `major:minor` (a partition's
/// parent disk, or the device itself): `<root>/dev/block/M:m`, resolved, walked up past
/// a `partition`.
pub fn disk_of(sysfs_root: &Path, major: u32, minor: u32) -> Result<String, DiscoveryError> {
    let link = sysfs_root.join(format!("dev/block/{major}:{minor}"));
    let resolved = std::fs::canonicalize(&link).map_err(|source| DiscoveryError::NoSuchDevice {
        major,
        minor,
        path: link.clone(),
        source,
    })?;
    let disk = if resolved.join("partition").is_file() {
        resolved.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        resolved.clone()
    };
    let name = disk
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .unwrap_or_default();
    // The disk must be one `<root>/block` lists.
    if name.is_empty() || !sysfs_root.join("block").join(&name).exists() {
        return Err(DiscoveryError::NotABlockDevice {
            path: resolved,
            block: sysfs_root.join("block").display().to_string(),
        });
    }
    Ok(name)
}

/// `major:minor` as written in sysfs `dev` files and `/proc/self/mountinfo`.
pub fn parse_major_minor(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
