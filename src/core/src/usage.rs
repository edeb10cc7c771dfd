//! What the host itself uses each device for: filesystems, swap, console, default route.
//!
//! Everything is read from the same host root as the topology: `proc/self/mountinfo`,
//! `proc/swaps`, `proc/net/route` and `ipv6_route`, `sys/class/{block,net,graphics,drm}`,
//! `sys/dev/block`, `sys/fs/btrfs` and udev's database for ZFS pool members. A block device
//! is followed down through `slaves/` (device-mapper, md, LVM) to the disks, and a disk up to the
//! PCI function it hangs off.

use crate::address::PciAddress;
use crate::host::HostRoot;
use crate::model::Use;
use crate::scan::ScanError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Mount points whose loss takes the system down (as opposed to a data disk).
const SYSTEM_MOUNTS: &[&str] = &["/", "/usr", "/boot", "/boot/efi", "/efi", "/var", "/etc"];
/// Filesystems that come over the network: their NIC is what holds them.
const NETWORK_FS: &[&str] = &["nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs"];
/// Enough to follow any sane dm/md/LVM stack; stops a hostile `slaves` loop.
const MAX_STACK: usize = 16;

/// One line of mountinfo, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub majmin: String,
    pub mountpoint: String,
    pub fstype: String,
    pub source: String,
}

/// Parses `/proc/self/mountinfo`. Malformed lines are skipped: the file is the kernel's, and
/// one odd line must not hide the root filesystem.
pub fn parse_mountinfo(s: &str) -> Vec<Mount> {
    s.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if l.len() < 5 || r.len() < 2 {
                return None;
            }
            Some(Mount {
                majmin: l[2].to_string(),
                mountpoint: unescape(l[4]),
                fstype: r[0].to_string(),
                source: unescape(r[1]),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last PCI function in a sysfs path: the device a block or net device hangs off.
fn pci_ancestor(path: &Path) -> Option<PciAddress> {
    path.components()
        .filter_map(|c| c.as_os_str().to_str()?.parse::<PciAddress>().ok())
        .next_back()
}

struct Ctx<'a> {
    root: &'a HostRoot,
    uses: BTreeMap<PciAddress, Vec<Use>>,
}

impl Ctx<'_> {
    fn add(&mut self, a: PciAddress, u: Use) {
        let v = self.uses.entry(a).or_default();
        if !v.contains(&u) {
            v.push(u);
        }
    }

    /// A block device name (`nvme0n1p2`, `dm-0`, `md127`) → the PCI functions under it.
    fn block_to_pci(&self, name: &str, out: &mut BTreeSet<PciAddress>, depth: usize) {
        if depth > MAX_STACK || name.is_empty() || name.contains('/') {
            return;
        }
        let class = Path::new("sys/class/block").join(name);
        let Ok(dev) = self.root.resolve_link(&class) else {
            return;
        };
        if let Some(a) = pci_ancestor(&dev) {
            out.insert(a);
            return;
        }
        // Virtual: device-mapper, md, loop … follow what it is built from.
        if let Ok(slaves) = self.root.read_dir(dev.join("slaves")) {
            for s in slaves {
                self.block_to_pci(&s.to_string_lossy(), out, depth + 1);
            }
        }
        // A partition of a virtual disk (md127p1) has its slaves on the parent.
        if let Some(parent) = dev.parent() {
            if self.root.exists(parent.join("slaves")) && self.root.exists(dev.join("partition")) {
                if let Some(p) = parent.file_name() {
                    self.block_to_pci(&p.to_string_lossy(), out, depth + 1);
                }
            }
        }
    }

    /// A mount source (`/dev/nvme0n1p2`, `/dev/mapper/vg-root`, `/dev/root`) → block name.
    fn source_to_block(&self, source: &str, majmin: &str) -> Option<String> {
        if let Some(rest) = source.strip_prefix("/dev/") {
            let devpath = Path::new("dev").join(rest);
            // /dev/mapper/x and /dev/disk/by-*/x are links to ../dm-N or ../../sdX.
            if let Ok(t) = self.root.resolve_link(&devpath) {
                if let Some(n) = t.file_name() {
                    let n = n.to_string_lossy().into_owned();
                    if self.root.exists(Path::new("sys/class/block").join(&n)) {
                        return Some(n);
                    }
                }
            }
            let base = Path::new(rest).file_name()?.to_string_lossy().into_owned();
            if self.root.exists(Path::new("sys/class/block").join(&base)) {
                return Some(base);
            }
            if let Some(n) = self.dm_by_name(&base) {
                return Some(n);
            }
        }
        // /dev/root, or no /dev in a recording: the kernel's own dev_t is authoritative.
        if !majmin.starts_with("0:") {
            let link = Path::new("sys/dev/block").join(majmin);
            if let Ok(t) = self.root.resolve_link(&link) {
                return t.file_name().map(|n| n.to_string_lossy().into_owned());
            }
        }
        None
    }

    fn dm_by_name(&self, name: &str) -> Option<String> {
        let blocks = self.root.read_dir("sys/class/block").ok()?;
        blocks
            .into_iter()
            .map(|b| b.to_string_lossy().into_owned())
            .filter(|b| b.starts_with("dm-"))
            .find(|b| {
                self.root
                    .read_string(Path::new("sys/class/block").join(b).join("dm/name"))
                    .is_ok_and(|n| n == name)
            })
    }

    /// All members of the btrfs filesystem that `block` belongs to.
    fn btrfs_members(&self, block: &str) -> Vec<String> {
        let Ok(fss) = self.root.read_dir("sys/fs/btrfs") else {
            return vec![block.to_string()];
        };
        for fs in fss {
            let devs = Path::new("sys/fs/btrfs").join(&fs).join("devices");
            if let Ok(members) = self.root.read_dir(&devs) {
                let names: Vec<String> = members
                    .iter()
                    .map(|m| m.to_string_lossy().into_owned())
                    .collect();
                if names.iter().any(|n| n == block) {
                    return names;
                }
            }
        }
        vec![block.to_string()]
    }

    /// Block devices udev recorded as members of ZFS pool `pool`.
    fn zfs_members(&self, pool: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(blocks) = self.root.read_dir("sys/class/block") else {
            return out;
        };
        for b in blocks {
            let b = b.to_string_lossy().into_owned();
            let Ok(dev) = self
                .root
                .read_string(Path::new("sys/class/block").join(&b).join("dev"))
            else {
                continue;
            };
            let Ok(data) = self
                .root
                .read(Path::new("run/udev/data").join(format!("b{dev}")))
            else {
                continue;
            };
            let data = String::from_utf8_lossy(&data);
            let is_member = data.lines().any(|l| l == "E:ID_FS_TYPE=zfs_member");
            let label = format!("E:ID_FS_LABEL={pool}");
            if is_member && data.lines().any(|l| l == label) {
                out.push(b);
            }
        }
        out
    }

    /// A virtio-9p mount tag → the PCI function of the virtio device that exports it.
    fn virtio_9p_to_pci(&self, tag: &str) -> Option<PciAddress> {
        let devs = self.root.read_dir("sys/bus/virtio/devices").ok()?;
        devs.into_iter().find_map(|v| {
            let dev = self
                .root
                .resolve_link(Path::new("sys/bus/virtio/devices").join(&v))
                .ok()?;
            let t = self.root.read_string(dev.join("mount_tag")).ok()?;
            (t.trim_end_matches('\0') == tag)
                .then(|| pci_ancestor(&dev))
                .flatten()
        })
    }

    /// Network interface → PCI functions under it, through bridges, bonds and VLANs.
    fn net_to_pci(&self, iface: &str, out: &mut BTreeSet<PciAddress>, depth: usize) {
        if depth > MAX_STACK || iface.is_empty() || iface.contains('/') {
            return;
        }
        let Ok(dev) = self
            .root
            .resolve_link(Path::new("sys/class/net").join(iface))
        else {
            return;
        };
        if let Some(a) = pci_ancestor(&dev) {
            out.insert(a);
            return;
        }
        if let Ok(entries) = self.root.read_dir(&dev) {
            for e in entries {
                let e = e.to_string_lossy();
                if let Some(lower) = e.strip_prefix("lower_") {
                    self.net_to_pci(lower, out, depth + 1);
                }
            }
        }
    }
}

/// Interfaces that carry a default route (IPv4 and IPv6).
pub fn default_route_ifaces(route: &str, ipv6_route: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000" && f[0] != "lo" {
            let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
            if flags & 0x1 != 0 && !out.iter().any(|i| i == f[0]) {
                out.push(f[0].to_string());
            }
        }
    }
    for line in ipv6_route.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo" {
            let flags = u32::from_str_radix(f[8], 16).unwrap_or(0);
            // RTF_UP set, RTF_REJECT clear.
            if flags & 0x1 != 0 && flags & 0x200 == 0 && !out.iter().any(|i| i == f[9]) {
                out.push(f[9].to_string());
            }
        }
    }
    out
}

/// Scans every use the host makes of its PCI devices.
/// Everything [`scan_uses`] decides from, as read now (mount table, routes, swaps, the
/// framebuffer and DRM devices): while this is the same, so are the uses, and a caller that
/// kept the last answer need not resolve every mount to its device again.
pub fn uses_inputs(root: &HostRoot) -> String {
    let mut key = String::new();
    for f in [
        "proc/self/mountinfo",
        "proc/net/route",
        "proc/net/ipv6_route",
        "proc/swaps",
    ] {
        key += &root.read_string(f).unwrap_or_default();
        key.push('\0');
    }
    for d in ["sys/class/graphics", "sys/class/drm"] {
        for n in root.read_dir(d).unwrap_or_default() {
            key += &n.to_string_lossy();
            key.push(' ');
        }
        key.push('\0');
    }
    key
}

pub fn scan_uses(root: &HostRoot) -> Result<BTreeMap<PciAddress, Vec<Use>>, ScanError> {
    let mut cx = Ctx {
        root,
        uses: BTreeMap::new(),
    };
    let mounts = root
        .read_string("proc/self/mountinfo")
        .map(|s| parse_mountinfo(&s))
        .unwrap_or_default();
    let route = root.read_string("proc/net/route").unwrap_or_default();
    let route6 = root.read_string("proc/net/ipv6_route").unwrap_or_default();
    let default_ifaces = default_route_ifaces(&route, &route6);

    for m in &mounts {
        let system = SYSTEM_MOUNTS.contains(&m.mountpoint.as_str());
        let mk = || {
            if system {
                Use::SystemFilesystem {
                    mountpoint: m.mountpoint.clone(),
                    source: m.source.clone(),
                }
            } else {
                Use::Filesystem {
                    mountpoint: m.mountpoint.clone(),
                    source: m.source.clone(),
                }
            }
        };
        if NETWORK_FS.contains(&m.fstype.as_str()) {
            if system {
                for iface in &default_ifaces {
                    let mut pcis = BTreeSet::new();
                    cx.net_to_pci(iface, &mut pcis, 0);
                    for a in pcis {
                        cx.add(
                            a,
                            Use::NetworkRoot {
                                interface: iface.clone(),
                                source: m.source.clone(),
                            },
                        );
                    }
                }
            }
            continue;
        }
        if m.fstype == "9p" {
            // virtio-9p: the mount source is the tag of a virtio device (a VM's shared root).
            if let Some(a) = cx.virtio_9p_to_pci(&m.source) {
                cx.add(a, mk());
            }
            continue;
        }
        let blocks: Vec<String> = if m.fstype == "zfs" {
            let pool = m.source.split('/').next().unwrap_or("");
            cx.zfs_members(pool)
        } else {
            match cx.source_to_block(&m.source, &m.majmin) {
                Some(b) if m.fstype == "btrfs" => cx.btrfs_members(&b),
                Some(b) => vec![b],
                None => continue,
            }
        };
        let mut pcis = BTreeSet::new();
        for b in &blocks {
            cx.block_to_pci(b, &mut pcis, 0);
        }
        for a in pcis {
            cx.add(a, mk());
        }
    }

    if let Ok(swaps) = root.read_string("proc/swaps") {
        for line in swaps.lines().skip(1) {
            let Some(file) = line.split_whitespace().next() else {
                continue;
            };
            let file = unescape(file);
            let block = if file.starts_with("/dev/") {
                cx.source_to_block(&file, "0:0")
            } else {
                // A swap file lives on whatever filesystem holds its path.
                mounts
                    .iter()
                    .filter(|m| file.starts_with(&m.mountpoint))
                    .max_by_key(|m| m.mountpoint.len())
                    .and_then(|m| cx.source_to_block(&m.source, &m.majmin))
            };
            let mut pcis = BTreeSet::new();
            if let Some(b) = block {
                cx.block_to_pci(&b, &mut pcis, 0);
            }
            for a in pcis {
                cx.add(
                    a,
                    Use::Swap {
                        source: file.clone(),
                    },
                );
            }
        }
    }

    for iface in &default_ifaces {
        let mut pcis = BTreeSet::new();
        cx.net_to_pci(iface, &mut pcis, 0);
        for a in pcis {
            cx.add(
                a,
                Use::DefaultRoute {
                    interface: iface.clone(),
                },
            );
        }
    }

    // The console: the framebuffer a VT draws on. fb0 is what fbcon binds first.
    if let Ok(fbs) = root.read_dir("sys/class/graphics") {
        // fbcon binds the first framebuffer; firmware framebuffers (efifb, simplefb) sit on a
        // platform device, and the GPU behind them is the boot VGA device (marked separately).
        if let Some(fb) = fbs.iter().find(|f| f.to_string_lossy().starts_with("fb")) {
            let fb = fb.to_string_lossy().into_owned();
            let dev = Path::new("sys/class/graphics").join(&fb).join("device");
            if let Ok(t) = root.resolve_link(&dev) {
                if let Some(a) = pci_ancestor(&t) {
                    cx.add(
                        a,
                        Use::Console {
                            framebuffer: fb.clone(),
                        },
                    );
                }
            }
        }
    }

    if let Ok(cards) = root.read_dir("sys/class/drm") {
        for c in cards {
            let c = c.to_string_lossy().into_owned();
            let Some((card, connector)) = c.split_once('-') else {
                continue;
            };
            let status = Path::new("sys/class/drm").join(&c).join("status");
            if root.read_string(&status).is_ok_and(|s| s == "connected") {
                let dev = Path::new("sys/class/drm").join(card).join("device");
                if let Ok(t) = root.resolve_link(&dev) {
                    if let Some(a) = pci_ancestor(&t) {
                        cx.add(
                            a,
                            Use::Display {
                                connector: connector.to_string(),
                            },
                        );
                    }
                }
            }
        }
    }
    Ok(cx.uses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let s = "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n\
                 30 22 0:27 / /mnt/my\\040disk rw - btrfs /dev/sda1 rw,space_cache\n\
                 garbage line\n";
        let m = parse_mountinfo(s);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].source, "/dev/nvme0n1p2");
        assert_eq!(m[1].mountpoint, "/mnt/my disk");
    }

    #[test]
    fn default_routes_v4_and_v6() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  enp7s0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  enp7s0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlp6s0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(default_route_ifaces(v4, v6), vec!["enp7s0", "wlp6s0"]);
    }
}
