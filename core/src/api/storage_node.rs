//! `StorageNode`: one per Kubernetes node, the node agent's inventory of disks.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Time};
use crate::Tier;

/// A node's storage inventory and its agent's endpoint.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "couchestor.io",
    version = "v1alpha1",
    kind = "StorageNode",
    doc = "A node's disk inventory and node-agent endpoint.",
    shortname = "sn",
    status = "StorageNodeStatus",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Devices","type":"integer","jsonPath":".status.deviceCount"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.agentEndpoint","priority":1}"#,
    printcolumn = r#"{"name":"Heartbeat","type":"date","jsonPath":".status.lastHeartbeat"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.nodeName == oldSelf.nodeName").message("nodeName is immutable").field_path(".nodeName"))]
pub struct StorageNodeSpec {
    /// The Kubernetes node this inventory describes.
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
    /// Include loop, ram, zram and device-mapper devices in discovery.
    #[serde(default)]
    pub include_virtual_devices: bool,
}

/// Transport / kind of a block device.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeviceKind {
    #[serde(rename = "NVMe")]
    Nvme,
    #[serde(rename = "SAS")]
    Sas,
    #[serde(rename = "SATA")]
    Sata,
    #[serde(rename = "virtio")]
    Virtio,
    #[serde(rename = "unknown")]
    Unknown,
}

/// SMART data from `smartctl --json`, when smartmontools is installed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmartData {
    /// Overall health self-assessment passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_on_hours: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_errors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_used: Option<u32>,
}

/// An attribute discovery could not read, and why (a missing file, an unreadable one,
/// a value that does not parse). Never read as zero or false.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct UnknownAttribute {
    /// The attribute (`rotational`, `sizeBytes`, `serial`, ...).
    pub name: String,
    pub reason: String,
}

/// One discovered block device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Kernel name (`nvme0n1`, `sda`).
    pub name: String,
    /// Device node (`/dev/nvme0n1`).
    pub path: String,
    pub kind: DeviceKind,
    /// What the kind was read from (`NVMe controller nvme0 (pcie)`, `libata port ata2`).
    #[serde(default)]
    pub kind_reason: String,
    /// Controller the device hangs off: NVMe controller (`nvme0`), SCSI host (`host2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// NVMe namespace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_id: Option<u32>,
    /// `queue/rotational`; absent when it could not be read (see `unknownAttributes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotational: Option<bool>,
    /// `size` × 512; absent when it could not be read. Zero is a real size (an empty
    /// card reader, a detached loop device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_block_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_block_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwid: Option<String>,
    /// Stable device links from the udev database (`/dev/disk/by-id/...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// SMART data; absent when smartmontools is not installed or the device gave none
    /// (`smartAbsentReason` says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart: Option<SmartData>,
    /// Why `smart` is absent (`smartctl not installed`, smartctl's own message, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_absent_reason: Option<String>,
    /// Suggested tier (NVMe → hot, SSD → warm, HDD → cold); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_tier: Option<Tier>,
    /// Why that tier was suggested (or why none was).
    #[serde(default)]
    pub tier_reason: String,
    /// Attributes that could not be read, each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_attributes: Vec<UnknownAttribute>,
}

/// Observed state of a node, written by its node agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageNodeStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// Number of devices, for `kubectl get sn`.
    #[serde(default)]
    pub device_count: u32,
    /// Node agent gRPC endpoint (`https://host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
