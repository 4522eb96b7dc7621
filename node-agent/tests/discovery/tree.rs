//! The sysfs fixture trees of `tests/discovery.rs`, built in a temporary directory
//! (see `tests/fixtures/sysfs/README.md`).

use std::path::Path;

use couchestor_node_agent::discovery::{self, Inventory, Options, SmartSource};

/// A sysfs (and udev) tree in a temporary directory.
pub struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        self
    }

    pub fn dir(&self, rel: &str) -> &Self {
        std::fs::create_dir_all(self.root().join(rel)).expect("mkdir");
        self
    }

    /// A relative symlink at `rel` to root-relative `target`, as sysfs makes them.
    pub fn link(&self, rel: &str, target: &str) -> &Self {
        let path = self.root().join(rel);
        let parent = path.parent().expect("parent");
        std::fs::create_dir_all(parent).expect("mkdir");
        let depth = Path::new(rel).components().count() - 1;
        let relative = format!("{}{target}", "../".repeat(depth));
        std::os::unix::fs::symlink(relative, &path).expect("symlink");
        self
    }

    /// A whole disk at `devpath` (root-relative, ending in `block/<name>`): `dev`, `size`
    /// (sectors), queue attributes, and the `block/` and `dev/block/` links.
    pub fn disk(&self, devpath: &str, dev: &str, sectors: &str, rotational: &str) -> &Self {
        let name = devpath.rsplit('/').next().expect("name");
        self.file(&format!("{devpath}/dev"), format!("{dev}\n"))
            .file(&format!("{devpath}/size"), format!("{sectors}\n"))
            .file(
                &format!("{devpath}/queue/rotational"),
                format!("{rotational}\n"),
            )
            .file(&format!("{devpath}/queue/logical_block_size"), "512\n")
            .file(&format!("{devpath}/queue/physical_block_size"), "4096\n")
            .link(&format!("block/{name}"), devpath)
            .link(&format!("dev/block/{dev}"), devpath)
    }

    pub fn options(&self) -> Options {
        Options {
            sysfs_root: self.root().to_path_buf(),
            udev_root: self.root().join("run/udev"),
            include_virtual: false,
            smart: SmartSource::Off,
        }
    }

    pub fn discover(&self) -> Inventory {
        discovery::discover(&self.options()).expect("discover")
    }
}

pub const NVME_CTRL: &str = "devices/pci0000:00/0000:00:01.1/0000:01:00.0/nvme/nvme0";
pub const SAS_LUN: &str = "devices/pci0000:00/0000:00:03.0/0000:03:00.0/host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0";
pub const SATA_LUN: &str = "devices/pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0";
pub const VIRTIO: &str = "devices/pci0000:00/0000:00:02.0/virtio1";

pub fn nvme_ssd(t: &Tree) {
    let ns = format!("{NVME_CTRL}/nvme0n1");
    t.file(
        &format!("{NVME_CTRL}/model"),
        "Samsung SSD 980 PRO 1TB                 \n",
    )
    .file(&format!("{NVME_CTRL}/serial"), "S5GXNF0R123456A     \n")
    .file(&format!("{NVME_CTRL}/transport"), "pcie\n")
    .link("class/nvme/nvme0", NVME_CTRL)
    .disk(&ns, "259:0", "1953525168", "0")
    .file(&format!("{ns}/nsid"), "1\n")
    .file(&format!("{ns}/wwid"), "eui.002538b911b2c3d4\n")
    .link(&format!("{ns}/device"), NVME_CTRL);
}

/// VPD page 0x80 as the kernel exposes it: header, then the serial in ASCII.
pub fn vpd_pg80(serial: &str) -> Vec<u8> {
    let mut page = vec![0x00, 0x80, 0x00, u8::try_from(serial.len()).expect("short")];
    page.extend_from_slice(serial.as_bytes());
    page
}

pub fn sas_hdd(t: &Tree) {
    t.file(&format!("{SAS_LUN}/vendor"), "SEAGATE \n")
        .file(&format!("{SAS_LUN}/model"), "ST4000NM0025    \n")
        .file(&format!("{SAS_LUN}/wwid"), "naa.5000c500a1b2c3d4\n")
        .file(&format!("{SAS_LUN}/vpd_pg80"), vpd_pg80("ZC12WXYZ"))
        .dir("devices/pci0000:00/0000:00:03.0/0000:03:00.0/host0/sas_host/host0")
        .link(
            "class/sas_host/host0",
            "devices/pci0000:00/0000:00:03.0/0000:03:00.0/host0/sas_host/host0",
        )
        .disk(&format!("{SAS_LUN}/block/sda"), "8:0", "7814037168", "1")
        .link(&format!("{SAS_LUN}/block/sda/device"), SAS_LUN);
}

pub fn sata_ssd(t: &Tree) {
    t.file(&format!("{SATA_LUN}/vendor"), "ATA     \n")
        .file(&format!("{SATA_LUN}/model"), "Samsung SSD 870 \n")
        .disk(&format!("{SATA_LUN}/block/sdb"), "8:16", "1953525168", "0")
        .link(&format!("{SATA_LUN}/block/sdb/device"), SATA_LUN)
        .file(
            "run/udev/data/b8:16",
            "S:disk/by-id/ata-Samsung_SSD_870_EVO_1TB_S5Y1NX0R123456\n\
             S:disk/by-id/wwn-0x5002538e40a22954\nW:3\nI:4417081\n\
             E:ID_ATA=1\nE:ID_BUS=ata\nE:ID_MODEL=Samsung_SSD_870_EVO_1TB\n\
             E:ID_SERIAL_SHORT=S5Y1NX0R123456\nE:ID_WWN=0x5002538e40a22954\nG:systemd\n",
        );
}

pub fn virtio_disk(t: &Tree) {
    t.disk(&format!("{VIRTIO}/block/vda"), "254:0", "536870912", "1")
        .file(&format!("{VIRTIO}/block/vda/serial"), "20166310133103623")
        .link(&format!("{VIRTIO}/block/vda/device"), VIRTIO);
}
