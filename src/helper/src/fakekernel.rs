//! A fake kernel over a host-root tree, for fast tests of claims, rollbacks and journal replay
//! (modelled on libvirt's virpcimock): it answers `driver_override`, `unbind`,
//! `drivers_probe` and `drivers/D/bind` writes the way Linux does — including reporting
//! success for a probe that did not bind — and keeps the list of writes so a test can
//! snapshot exactly what an operation did. Failures are injected per device and driver.
//!
//! The tree is one `synth` writes (or a recording); the scanner reads the result back, so a
//! test sees the same model the helper would.

use crate::claim::Kernel;
use passage_core::address::{GroupId, PciAddress};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What can be made to go wrong.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// (device, driver): the driver's probe fails (silently for drivers_probe, EINVAL for bind).
    pub refuse_bind: BTreeSet<(PciAddress, String)>,
    /// Devices whose driver refuses to let go (EBUSY on unbind).
    pub refuse_unbind: BTreeSet<PciAddress>,
    /// Panic (as a `kill -9` would stop us) on this write, counting from 1.
    pub die_at_write: Option<usize>,
    /// vfio-pci cannot be loaded.
    pub no_vfio: bool,
}

/// The fake.
pub struct FakeKernel {
    root: PathBuf,
    natural: BTreeMap<PciAddress, Option<String>>,
    pub faults: Mutex<Faults>,
    writes: Mutex<Vec<(String, String)>>,
    holders: Mutex<BTreeMap<GroupId, Vec<String>>>,
}

fn err(kind: io::ErrorKind, msg: &str) -> io::Error {
    io::Error::new(kind, msg.to_string())
}

impl FakeKernel {
    /// Takes over the tree at `root`; each device's current driver becomes the one the kernel
    /// would pick for it when nothing overrides.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let mut natural = BTreeMap::new();
        for e in std::fs::read_dir(root.join("sys/bus/pci/devices"))? {
            let e = e?;
            let Some(a) = e
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<PciAddress>().ok())
            else {
                continue;
            };
            let drv = std::fs::read_link(e.path().join("driver"))
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
            natural.insert(a, drv);
        }
        Ok(Self {
            root,
            natural,
            faults: Mutex::new(Faults::default()),
            writes: Mutex::new(Vec::new()),
            holders: Mutex::new(BTreeMap::new()),
        })
    }

    /// Every write so far, as (`/sys/...` path, value).
    pub fn writes(&self) -> Vec<(String, String)> {
        self.writes.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Pretends process `who` holds `/dev/vfio/g` open.
    pub fn hold(&self, g: GroupId, who: &str) {
        if let Ok(mut h) = self.holders.lock() {
            h.entry(g).or_default().push(who.to_string());
        }
    }

    fn dev(&self, a: PciAddress) -> PathBuf {
        self.root.join(format!("sys/bus/pci/devices/{a}"))
    }

    fn canonical_dev(&self, a: PciAddress) -> io::Result<PathBuf> {
        std::fs::canonicalize(self.dev(a))
    }

    fn class(&self, a: PciAddress) -> u32 {
        std::fs::read_to_string(self.dev(a).join("class"))
            .ok()
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    }

    fn override_of(&self, a: PciAddress) -> Option<String> {
        let s = std::fs::read_to_string(self.dev(a).join("driver_override")).ok()?;
        let s = s.trim().to_string();
        (!s.is_empty() && s != "(null)").then_some(s)
    }

    fn group_of(&self, a: PciAddress) -> Option<GroupId> {
        std::fs::read_link(self.dev(a).join("iommu_group"))
            .ok()?
            .file_name()?
            .to_str()?
            .parse()
            .ok()
    }

    fn link_driver(&self, a: PciAddress, drv: &str) -> io::Result<()> {
        let ddir = self.root.join("sys/bus/pci/drivers").join(drv);
        if !ddir.is_dir() {
            return Err(err(io::ErrorKind::NotFound, "no such driver"));
        }
        let dev = self.canonical_dev(a)?;
        let root = std::fs::canonicalize(&self.root)?;
        let rel_dev = dev.strip_prefix(&root).map_err(io::Error::other)?;
        let depth = rel_dev.components().count();
        let up: PathBuf = (0..depth).map(|_| "..").collect();
        std::os::unix::fs::symlink(up.join("sys/bus/pci/drivers").join(drv), dev.join("driver"))?;
        let _ = std::os::unix::fs::symlink(
            PathBuf::from("../../../..").join(rel_dev),
            ddir.join(a.to_string()),
        );
        if drv == "vfio-pci" {
            if let Some(g) = self.group_of(a) {
                let node = self.root.join(format!("dev/vfio/{g}"));
                std::fs::create_dir_all(self.root.join("dev/vfio"))?;
                let _ = std::fs::write(node, "");
            }
        }
        Ok(())
    }

    fn unlink_driver(&self, a: PciAddress, drv: &str) -> io::Result<()> {
        let dev = self.canonical_dev(a)?;
        std::fs::remove_file(dev.join("driver"))?;
        let _ = std::fs::remove_file(
            self.root
                .join("sys/bus/pci/drivers")
                .join(drv)
                .join(a.to_string()),
        );
        if drv == "vfio-pci" {
            if let Some(g) = self.group_of(a) {
                let still = self
                    .group_members(g)
                    .into_iter()
                    .any(|m| self.current(m).as_deref() == Some("vfio-pci"));
                if !still {
                    let _ = std::fs::remove_file(self.root.join(format!("dev/vfio/{g}")));
                }
            }
        }
        Ok(())
    }

    fn current(&self, a: PciAddress) -> Option<String> {
        std::fs::read_link(self.dev(a).join("driver"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    fn group_members(&self, g: GroupId) -> Vec<PciAddress> {
        std::fs::read_dir(
            self.root
                .join(format!("sys/kernel/iommu_groups/{g}/devices")),
        )
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    }

    /// Would `drv` accept `a`? vfio-pci refuses bridges (header type 1), like the kernel.
    fn accepts(&self, a: PciAddress, drv: &str) -> bool {
        if drv == "vfio-pci" {
            return self.class(a) >> 8 != 0x0604;
        }
        if drv == "pci-stub" {
            return true;
        }
        self.natural.get(&a).and_then(|d| d.as_deref()) == Some(drv)
    }

    fn probe(&self, a: PciAddress, explicit: Option<&str>) -> io::Result<()> {
        if self.current(a).is_some() {
            return if explicit.is_some() {
                Err(err(io::ErrorKind::ResourceBusy, "already bound"))
            } else {
                Ok(())
            };
        }
        let over = self.override_of(a);
        let target = match (explicit, &over) {
            // With driver_override set, only that driver matches.
            (Some(d), Some(o)) if d != o => {
                return Err(err(io::ErrorKind::NotFound, "no match (driver_override)"))
            }
            (Some(d), _) => Some(d.to_string()),
            (None, Some(o)) => Some(o.clone()),
            (None, None) => self.natural.get(&a).cloned().flatten(),
        };
        let Some(target) = target else { return Ok(()) };
        let refused = self
            .faults
            .lock()
            .map(|f| f.refuse_bind.contains(&(a, target.clone())))
            .unwrap_or(false);
        if refused || !self.accepts(a, &target) {
            // drivers_probe lies: success, nothing bound. An explicit bind says EINVAL.
            return if explicit.is_some() {
                Err(err(io::ErrorKind::InvalidInput, "probe failed"))
            } else {
                Ok(())
            };
        }
        match self.link_driver(a, &target) {
            Ok(()) => Ok(()),
            Err(_) if explicit.is_none() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Kernel for FakeKernel {
    fn write(&self, rel: &Path, value: &str) -> io::Result<()> {
        let n = {
            let mut w = self
                .writes
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            w.push((format!("/{}", rel.display()), value.to_string()));
            w.len()
        };
        if self
            .faults
            .lock()
            .map(|f| f.die_at_write == Some(n))
            .unwrap_or(false)
        {
            panic!("fake kernel: the helper is killed at write {n}");
        }
        let parts: Vec<&str> = rel.to_str().unwrap_or("").split('/').collect();
        let addr = |s: &str| {
            s.parse::<PciAddress>()
                .map_err(|_| err(io::ErrorKind::InvalidInput, "bad address"))
        };
        let v = value.trim();
        match parts.as_slice() {
            ["sys", "bus", "pci", "devices", a, "driver_override"] => {
                let a = addr(a)?;
                let s = if v.is_empty() {
                    "(null)".to_string()
                } else {
                    v.to_string()
                };
                std::fs::write(self.dev(a).join("driver_override"), s + "\n")
            }
            ["sys", "bus", "pci", "devices", a, "driver", "unbind"] => {
                let a = addr(a)?;
                let Some(drv) = self.current(a) else {
                    return Err(err(io::ErrorKind::NotFound, "not bound"));
                };
                if addr(v)? != a {
                    return Err(err(
                        io::ErrorKind::NotFound,
                        "no such device on this driver",
                    ));
                }
                if self
                    .faults
                    .lock()
                    .map(|f| f.refuse_unbind.contains(&a))
                    .unwrap_or(false)
                {
                    return Err(err(io::ErrorKind::ResourceBusy, "device or resource busy"));
                }
                self.unlink_driver(a, &drv)
            }
            // The kernel shows `reset` only where it has a method (`reset_method` not empty).
            ["sys", "bus", "pci", "devices", a, "reset"] => {
                let a = addr(a)?;
                let methods =
                    std::fs::read_to_string(self.dev(a).join("reset_method")).unwrap_or_default();
                if methods.trim().is_empty() || v != "1" {
                    return Err(err(io::ErrorKind::NotFound, "no such attribute"));
                }
                // A test's device that does not come back from its reset: from now on its
                // config space reads all ones, as a real one that fell off the bus does.
                if self.dev(a).join(".gone-after-reset").exists() {
                    let cfg = self.dev(a).join("config");
                    let mut bytes = std::fs::read(&cfg)?;
                    for b in bytes.iter_mut().take(4) {
                        *b = 0xff;
                    }
                    std::fs::write(&cfg, bytes)?;
                }
                Ok(())
            }
            // A resizable BAR, as pci_resize_resource takes it: only while no driver holds the
            // device, only a size its capability offers; the BAR's line in `resource` follows.
            ["sys", "bus", "pci", "devices", a, file]
                if file.starts_with("resource") && file.ends_with("_resize") =>
            {
                let a = addr(a)?;
                let bar: usize = file["resource".len()..file.len() - "_resize".len()]
                    .parse()
                    .map_err(|_| err(io::ErrorKind::NotFound, "no such attribute"))?;
                let dir = self.dev(a);
                let mask = std::fs::read_to_string(dir.join(file))
                    .ok()
                    .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                    .ok_or_else(|| err(io::ErrorKind::NotFound, "no such attribute"))?;
                if self.current(a).is_some() {
                    return Err(err(io::ErrorKind::ResourceBusy, "device or resource busy"));
                }
                let n: u32 = v
                    .parse()
                    .map_err(|_| err(io::ErrorKind::InvalidInput, "invalid argument"))?;
                if n >= 48 || mask & (1 << n) == 0 {
                    return Err(err(io::ErrorKind::InvalidInput, "invalid argument"));
                }
                let text = std::fs::read_to_string(dir.join("resource"))?;
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                let line = lines
                    .get_mut(bar)
                    .ok_or_else(|| err(io::ErrorKind::InvalidInput, "invalid argument"))?;
                let f: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok())
                    .collect();
                let (start, flags) = match f.as_slice() {
                    [s, _, fl] => (*s, *fl),
                    _ => return Err(err(io::ErrorKind::InvalidInput, "invalid argument")),
                };
                let size = (1u64 << n) * 1024 * 1024;
                *line = format!("0x{start:016x} 0x{:016x} 0x{flags:016x}", start + size - 1);
                std::fs::write(dir.join("resource"), lines.join("\n") + "\n")
            }
            ["sys", "bus", "pci", "drivers_probe"] => self.probe(addr(v)?, None),
            ["sys", "bus", "pci", "drivers", drv, "bind"] => self.probe(addr(v)?, Some(drv)),
            _ => Err(err(io::ErrorKind::NotFound, "no such attribute")),
        }
    }

    fn driver_of(&self, a: PciAddress) -> io::Result<Option<String>> {
        Ok(self.current(a))
    }

    fn load_vfio(&self) -> io::Result<()> {
        if self.faults.lock().map(|f| f.no_vfio).unwrap_or(false) {
            return Err(io::Error::other("modprobe vfio-pci failed"));
        }
        std::fs::create_dir_all(self.root.join("sys/bus/pci/drivers/vfio-pci"))
    }

    fn group_viable(&self, g: GroupId) -> io::Result<Option<bool>> {
        if !self.root.join(format!("dev/vfio/{g}")).exists() {
            return Ok(None);
        }
        let ok = self.group_members(g).into_iter().all(|m| {
            self.class(m) >> 8 == 0x0604
                || matches!(
                    self.current(m).as_deref(),
                    None | Some("vfio-pci") | Some("pci-stub")
                )
        });
        Ok(Some(ok))
    }

    fn identity(&self, a: PciAddress) -> io::Result<Option<(u16, u16)>> {
        crate::claim::read_identity(&self.dev(a))
    }

    fn holders(&self, g: GroupId) -> Vec<String> {
        self.holders
            .lock()
            .map(|h| h.get(&g).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}
