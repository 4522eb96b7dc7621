//! The tier a discovered disk suggests, with the reason (issue #6).
//!
//! | kind    | rotational | suggestion |
//! |---------|------------|------------|
//! | NVMe    | no / unknown | hot (NVMe flash) |
//! | NVMe    | yes        | cold (an NVMe-attached HDD exists; rotation wins) |
//! | other   | no         | warm (SSD) |
//! | other   | yes        | cold (HDD) |
//! | other   | unknown    | none: nothing to tell an SSD from an HDD |
//!
//! A virtio disk's rotational flag is what the hypervisor chose to report, not the
//! backing media; the reason says so. The suggestion is advice for whoever labels
//! Mayastor pools: the operator never moves data on it.

use crate::Tier;
use crate::api::DeviceKind;

/// A suggested tier (`None`: unknown) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub tier: Option<Tier>,
    pub reason: String,
}

/// Suggests a tier from the device's kind and rotational flag (`None` when unreadable).
pub fn suggest(kind: DeviceKind, rotational: Option<bool>) -> Suggestion {
    let virtual_note = if kind == DeviceKind::Virtio {
        " as reported by the hypervisor (virtual disk: backing media not visible)"
    } else {
        ""
    };
    let (tier, reason) = match (kind, rotational) {
        (DeviceKind::Nvme, Some(true)) => (
            Some(Tier::Cold),
            "NVMe-attached but rotational (an NVMe hard disk)".to_owned(),
        ),
        (DeviceKind::Nvme, Some(false)) => (Some(Tier::Hot), "NVMe flash".to_owned()),
        (DeviceKind::Nvme, None) => (
            Some(Tier::Hot),
            "NVMe (rotational flag unknown; NVMe hard disks are rare)".to_owned(),
        ),
        (kind, Some(false)) => (
            Some(Tier::Warm),
            format!("non-rotational (SSD) on {}{virtual_note}", kind_name(kind)),
        ),
        (kind, Some(true)) => (
            Some(Tier::Cold),
            format!("rotational (HDD) on {}{virtual_note}", kind_name(kind)),
        ),
        (kind, None) => (
            None,
            format!(
                "rotational flag unknown on {}: cannot tell an SSD from an HDD",
                kind_name(kind)
            ),
        ),
    };
    Suggestion { tier, reason }
}

fn kind_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Nvme => "NVMe",
        DeviceKind::Sas => "SAS",
        DeviceKind::Sata => "SATA",
        DeviceKind::Virtio => "virtio",
        DeviceKind::Unknown => "an unknown transport",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [DeviceKind; 5] = [
        DeviceKind::Nvme,
        DeviceKind::Sas,
        DeviceKind::Sata,
        DeviceKind::Virtio,
        DeviceKind::Unknown,
    ];

    #[test]
    fn nvme_flash_is_hot() {
        let s = suggest(DeviceKind::Nvme, Some(false));
        assert_eq!(s.tier, Some(Tier::Hot));
        assert!(s.reason.contains("NVMe"), "{}", s.reason);
    }

    #[test]
    fn a_non_rotational_sata_or_sas_disk_is_a_warm_ssd() {
        for kind in [DeviceKind::Sata, DeviceKind::Sas, DeviceKind::Unknown] {
            let s = suggest(kind, Some(false));
            assert_eq!(s.tier, Some(Tier::Warm), "{kind:?}");
            assert!(s.reason.contains("SSD"), "{}", s.reason);
        }
    }

    #[test]
    fn a_rotational_disk_is_a_cold_hdd_even_on_nvme() {
        for kind in KINDS {
            let s = suggest(kind, Some(true));
            assert_eq!(s.tier, Some(Tier::Cold), "{kind:?}");
        }
        assert_eq!(
            suggest(DeviceKind::Sas, Some(true)).reason,
            "rotational (HDD) on SAS"
        );
    }

    #[test]
    fn an_unknown_rotational_flag_stays_unknown_except_on_nvme() {
        for kind in KINDS {
            let s = suggest(kind, None);
            if kind == DeviceKind::Nvme {
                assert_eq!(s.tier, Some(Tier::Hot));
            } else {
                assert_eq!(s.tier, None, "{kind:?}");
                assert!(s.reason.contains("unknown"), "{}", s.reason);
            }
        }
    }

    #[test]
    fn a_virtio_disk_says_the_flag_comes_from_the_hypervisor() {
        let s = suggest(DeviceKind::Virtio, Some(false));
        assert_eq!(s.tier, Some(Tier::Warm));
        assert!(s.reason.contains("hypervisor"), "{}", s.reason);
    }

    #[test]
    fn every_suggestion_has_a_reason() {
        for kind in KINDS {
            for rotational in [None, Some(false), Some(true)] {
                assert!(!suggest(kind, rotational).reason.is_empty());
            }
        }
    }
}
