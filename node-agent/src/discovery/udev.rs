//! The udev database: `<udev root>/data/b<major>:<minor>`, one record per block device,
//! written by systemd-udevd. Lines are `<type>:<value>`; `E:KEY=VALUE` is a property
//! (`ID_SERIAL_SHORT`, `ID_MODEL`, `ID_WWN`, `ID_BUS`), `S:<link>` a symlink under
//! `/dev` (`disk/by-id/...`). Other line types (`I:`, `G:`, `Q:`, `V:`, `W:`) are not used.

use std::collections::BTreeMap;
use std::path::Path;

/// One device's udev record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub properties: BTreeMap<String, String>,
    /// Device links as absolute paths (`/dev/disk/by-id/...`), in file order.
    pub links: Vec<String>,
}

impl Record {
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}

/// The record of block device `major:minor`; `Ok(None)` when udev has none (no udevd,
/// a device udev has not processed), `Err(reason)` when the file exists but cannot be read.
pub fn read(udev_root: &Path, major: u32, minor: u32) -> Result<Option<Record>, String> {
    let path = udev_root.join(format!("data/b{major}:{minor}"));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(parse(&String::from_utf8_lossy(&bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Parses a record; lines it does not understand are ignored.
pub fn parse(text: &str) -> Record {
    let mut record = Record::default();
    for line in text.lines() {
        if let Some(property) = line.strip_prefix("E:") {
            if let Some((key, value)) = property.split_once('=') {
                record.properties.insert(key.to_owned(), value.to_owned());
            }
        } else if let Some(link) = line.strip_prefix("S:")
            && !link.is_empty()
        {
            record.links.push(format!("/dev/{link}"));
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_links_are_read_and_other_lines_ignored() {
        let record = parse(
            "S:disk/by-id/ata-ST4000NM0035_ZC11ABCD\nS:disk/by-id/wwn-0x5000c500a1b2c3d4\n\
             W:12\nI:1234567\nE:ID_ATA=1\nE:ID_SERIAL_SHORT=ZC11ABCD\nE:ID_MODEL=ST4000NM0035\n\
             E:BROKEN\nG:systemd\n",
        );
        assert_eq!(record.property("ID_SERIAL_SHORT"), Some("ZC11ABCD"));
        assert_eq!(record.property("ID_ATA"), Some("1"));
        assert_eq!(record.property("BROKEN"), None);
        assert_eq!(
            record.links,
            [
                "/dev/disk/by-id/ata-ST4000NM0035_ZC11ABCD",
                "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"
            ]
        );
    }

    #[test]
    fn a_device_udev_never_saw_has_no_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path(), 8, 0), Ok(None));
    }
}
