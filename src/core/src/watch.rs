//! Live updates: kernel device events turned into incremental model updates.
//!
//! [`apply`] is the one path by which an event changes a [`Host`]: the udev monitor below feeds
//! it, and so do tests and the GUI's event injection. It re-reads one device and one group,
//! never the whole host.
//!
//! The monitor listens on udev's own socket when udevd runs (events arrive after its rules),
//! else on the kernel's uevent socket directly (minimal systems and VMs have no udevd).

use crate::address::{GroupId, PciAddress};
use crate::explain::{self, State};
use crate::host::HostRoot;
use crate::model::{Device, Group, Host};
use crate::scan::{scan_device, ScanError};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;
use std::time::Duration;

/// What happened to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Add,
    Remove,
    Bind,
    Unbind,
    Change,
}

/// One event about one PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceEvent {
    pub action: Action,
    pub address: PciAddress,
}

/// What an event changed: one `passagectl monitor --json` line, and the body of the helper's
/// `DeviceChanged` signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub action: Action,
    pub address: PciAddress,
    pub group: Option<GroupId>,
    pub driver_before: Option<String>,
    pub driver_after: Option<String>,
    pub state_before: Option<State>,
    pub state_after: Option<State>,
}

/// The state of group `g` in `host` (`None`: no such group).
pub fn group_state(host: &Host, g: Option<GroupId>) -> Option<State> {
    let g = host.groups.get(&g?)?;
    Some(explain::group(host, g).state)
}

fn read_group(root: &HostRoot, id: GroupId) -> Result<Option<Group>, ScanError> {
    let gdir = Path::new("sys/kernel/iommu_groups").join(id.to_string());
    let members = match root.read_dir(gdir.join("devices")) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ScanError::Io {
                path: root.path().join(gdir),
                source: e,
            })
        }
    };
    let mut devices = Vec::new();
    let mut other_members = Vec::new();
    for m in members {
        let s = m.to_string_lossy();
        match s.parse() {
            Ok(a) => devices.push(a),
            Err(_) => other_members.push(s.into_owned()),
        }
    }
    let kind = root
        .read_string(gdir.join("type"))
        .ok()
        .filter(|s| !s.is_empty());
    Ok(Some(Group {
        id,
        devices,
        other_members,
        kind,
    }))
}

/// Applies one event to the model by re-reading just that device and its group.
pub fn apply(host: &mut Host, root: &HostRoot, ev: &DeviceEvent) -> Result<Update, ScanError> {
    let read = read_event(root, ev, host.platform.page_size.max(4096))?;
    Ok(apply_read(host, ev, read))
}

/// What an event's device is now, read from sysfs without the model: the device (`None` when
/// it is gone), its group's members, whether the group has its VFIO node. A caller that keeps
/// a shared model reads this first and takes its lock only for [`apply_read`], so nobody waits
/// on sysfs reads done under the lock. Every event reads its device whole: a bind or unbind
/// changes more than the driver (a PF's driver turns SR-IOV off as it goes, a GPU driver may
/// resize a BAR), and events of one batch may remove and add the same device.
#[derive(Debug)]
pub struct EventRead {
    device: Option<Device>,
    group: Option<(GroupId, Option<Group>, bool)>,
}

/// Reads what event `ev` changed (see [`EventRead`]).
pub fn read_event(
    root: &HostRoot,
    ev: &DeviceEvent,
    page_size: u64,
) -> Result<EventRead, ScanError> {
    let device = if ev.action == Action::Remove {
        None
    } else {
        scan_device(root, ev.address, page_size)?
    };
    let group = match device.as_ref().and_then(|d| d.group) {
        Some(g) => Some((
            g,
            read_group(root, g)?,
            root.exists(Path::new("dev/vfio").join(g.to_string())),
        )),
        None => None,
    };
    Ok(EventRead { device, group })
}

/// The driver bound to `address` and its `driver_override`, `None` when the device is gone;
/// an error when they cannot be read.
fn read_driver(
    root: &HostRoot,
    address: PciAddress,
) -> io::Result<Option<(Option<String>, Option<String>)>> {
    let dir = Path::new("sys/bus/pci/devices").join(address.to_string());
    if !root.exists(&dir) {
        return Ok(None);
    }
    let driver = match root.read_link(dir.join("driver")) {
        Ok(t) => t.file_name().map(|f| f.to_string_lossy().into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let ovr = root.read_string(dir.join("driver_override"))?;
    let ovr = Some(ovr.trim().to_string()).filter(|s| !s.is_empty() && s != "(null)");
    Ok(Some((driver, ovr)))
}

/// Applies what [`read_event`] read for `ev` to `host`: what changed, from and to.
pub fn apply_read(host: &mut Host, ev: &DeviceEvent, read: EventRead) -> Update {
    let a = ev.address;
    let old: Option<Device> = host.devices.get(&a).cloned();
    let old_group = old.as_ref().and_then(|d| d.group);
    let state_before = group_state(host, old_group);
    match read.device {
        None => {
            host.devices.remove(&a);
            if let Some(g) = old_group {
                if let Some(grp) = host.groups.get_mut(&g) {
                    grp.devices.retain(|x| *x != a);
                    if grp.devices.is_empty() && grp.other_members.is_empty() {
                        host.groups.remove(&g);
                    }
                }
            }
        }
        Some(d) => {
            let gid = d.group;
            host.devices.insert(a, d);
            if let Some((g, grp, node)) = read.group {
                match grp {
                    Some(grp) => {
                        host.groups.insert(g, grp);
                    }
                    None => {
                        host.groups.remove(&g);
                    }
                }
                if node && host.platform.vfio_nodes.binary_search(&g).is_err() {
                    host.platform.vfio_nodes.push(g);
                    host.platform.vfio_nodes.sort();
                }
            }
            if old_group.is_some() && old_group != gid {
                if let Some(grp) = old_group.and_then(|g| host.groups.get_mut(&g)) {
                    grp.devices.retain(|x| *x != a);
                }
            }
        }
    }
    crate::scan::link_virtfns(&mut host.devices);
    let group = host.devices.get(&a).and_then(|d| d.group).or(old_group);
    Update {
        action: ev.action.clone(),
        address: a,
        group,
        driver_before: old.and_then(|d| d.driver),
        driver_after: host.devices.get(&a).and_then(|d| d.driver.clone()),
        state_before,
        state_after: group_state(host, group),
    }
}

/// Brings the model of group `g` up to date from the kernel, reading only what a decision about
/// that group needs: the group's member list; for each member the model knows, what a driver
/// change touches (its `driver` link and `driver_override`); a member new to the group read
/// whole, one gone dropped; and the host's uses of devices (mounts, routes, console), which can
/// change at any time (`uses_key` is what they were last read from,
/// [`crate::usage::uses_inputs`]:
/// while that is unchanged the uses are too). The rest of the model stays as events left it.
/// This is what a privileged change reads after taking its lock, instead of a scan of the
/// whole host.
pub fn refresh_group(
    host: &mut Host,
    root: &HostRoot,
    g: GroupId,
    uses_key: &mut String,
) -> Result<(), ScanError> {
    let mut addresses: Vec<PciAddress> = host
        .groups
        .get(&g)
        .map(|grp| grp.devices.clone())
        .unwrap_or_default();
    let now = read_group(root, g)?;
    if let Some(now) = &now {
        addresses.extend(now.devices.iter().copied());
    }
    addresses.sort();
    addresses.dedup();
    refresh_drivers(host, root, &addresses)?;
    match now {
        Some(grp) => {
            host.groups.insert(g, grp);
        }
        None => {
            host.groups.remove(&g);
        }
    }
    let key = crate::usage::uses_inputs(root);
    if *uses_key != key {
        host.uses = crate::usage::scan_uses(root)?;
        *uses_key = key;
    }
    Ok(())
}

/// Re-reads which driver holds each of `addresses`, the only thing a claim or release changes
/// about a device: its `driver` link and `driver_override`, two reads instead of a device's
/// twenty. A device the model does not know yet (or whose identity changed) is read whole;
/// one that is gone is dropped.
pub fn refresh_drivers(
    host: &mut Host,
    root: &HostRoot,
    addresses: &[PciAddress],
) -> Result<(), ScanError> {
    for &address in addresses {
        let dir = Path::new("sys/bus/pci/devices").join(address.to_string());
        let known = host.devices.contains_key(&address);
        let light = known
            .then(|| read_driver(root, address).ok().flatten())
            .flatten();
        match light {
            Some((driver, driver_override)) => {
                if let Some(d) = host.devices.get_mut(&address) {
                    d.driver = driver;
                    d.driver_override = driver_override;
                }
                if let Some(g) = host.devices.get(&address).and_then(|d| d.group) {
                    if host.platform.vfio_nodes.binary_search(&g).is_err()
                        && root.exists(Path::new("dev/vfio").join(g.to_string()))
                    {
                        host.platform.vfio_nodes.push(g);
                        host.platform.vfio_nodes.sort();
                    }
                }
            }
            // Unknown to the model, unreadable the light way, or gone: the event path reads it
            // whole (or drops it).
            _ => {
                let action = if root.exists(&dir) {
                    Action::Change
                } else {
                    Action::Remove
                };
                apply(host, root, &DeviceEvent { action, address })?;
            }
        }
    }
    Ok(())
}

/// A live source of PCI device events.
pub struct Monitor {
    socket: udev::MonitorSocket,
    /// "udev" or "kernel": which socket we listen on.
    pub source: &'static str,
}

impl Monitor {
    /// Opens the monitor on the running system.
    pub fn open() -> io::Result<Self> {
        let udevd = Path::new("/run/udev/control").exists();
        let builder = if udevd {
            udev::MonitorBuilder::new()?
        } else {
            udev::MonitorBuilder::new_kernel()?
        };
        let socket = builder.match_subsystem("pci")?.listen()?;
        Ok(Self {
            socket,
            source: if udevd { "udev" } else { "kernel" },
        })
    }

    /// Opens the kernel's own uevent socket, not udev's: for a service in a network
    /// namespace of its own (systemd's `PrivateNetwork=`), which udev's messages do not reach
    /// but the kernel's uevents do.
    pub fn open_kernel() -> io::Result<Self> {
        let socket = udev::MonitorBuilder::new_kernel()?
            .match_subsystem("pci")?
            .listen()?;
        Ok(Self {
            socket,
            source: "kernel",
        })
    }

    /// Waits up to `timeout` (forever with `None`) and returns the events that arrived.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Vec<DeviceEvent>> {
        use rustix::event::{poll, PollFd, PollFlags};
        use std::os::fd::AsFd;
        let fd = self.socket.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ts = timeout.map(|t| rustix::event::Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: t.subsec_nanos() as i64,
        });
        match poll(&mut fds, ts.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let mut out = Vec::new();
        for ev in self.socket.iter() {
            let action = match ev.event_type() {
                udev::EventType::Add => Action::Add,
                udev::EventType::Remove => Action::Remove,
                udev::EventType::Bind => Action::Bind,
                udev::EventType::Unbind => Action::Unbind,
                udev::EventType::Change => Action::Change,
                udev::EventType::Unknown => continue,
            };
            let dev = ev.device();
            let Some(address) = dev.sysname().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            out.push(DeviceEvent { action, address });
        }
        Ok(out)
    }
}
