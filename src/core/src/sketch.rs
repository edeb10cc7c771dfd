//! A host read in two steps, for a reader that lists groups before it explains them (the app,
//! whose list on a 10,000-function host must not wait for what only the cards on screen read).
//!
//! [`sketch`] reads what places every device in its group and under its port: config space,
//! the `iommu_group` and `physfn` links, the drivers', the groups' numbers, the platform and
//! the host's own uses — about half the system calls of a whole [`crate::scan::scan`]. What only
//! a verdict reads ([`Details`]: `driver_override`, `reset_method`, `numa_node`, `resource`, and
//! each group's `type`) comes after: for one group when its card is about to be drawn
//! ([`Sketch::detail`]), and for the rest on other threads ([`read`], then [`Sketch::finish`]).
//!
//! Until a group is detailed, [`Sketch::so_far`] is right about where it is listed and whether
//! it has anything for a guest ([`crate::view::outline`], [`crate::view::assignable`]) and wrong
//! about its verdict; once it is, its card is the one the whole host gives. The finished host is
//! the one `scan` reads. Both are checked on every recorded machine (tests/sketch.rs).

use crate::address::{GroupId, PciAddress};
use crate::host::HostRoot;
use crate::model::Host;
use crate::scan::{self, Details, ScanError};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;

/// A host whose devices are placed but not all detailed.
#[derive(Debug, Clone)]
pub struct Sketch {
    host: Host,
    /// Devices whose [`Details`] are not read yet.
    devices: BTreeSet<PciAddress>,
    /// Groups whose `type` is not read yet.
    groups: BTreeSet<GroupId>,
    page_size: u64,
    /// A device went away since it was placed (found by a group's details or by the rest).
    moved: bool,
}

/// What is left to read of a [`Sketch`], to be read off its thread.
#[derive(Debug, Clone)]
pub struct Work {
    /// Each device and its directory (`sys/devices/…/ADDR`).
    devices: Vec<(PciAddress, String)>,
    groups: Vec<GroupId>,
    page_size: u64,
}

impl Work {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.groups.is_empty()
    }
}

/// What [`read`] found; `None` for a device whose directory went away meanwhile.
#[derive(Debug, Default)]
pub struct Read {
    devices: Vec<(PciAddress, Option<Details>)>,
    groups: Vec<(GroupId, Option<String>)>,
}

/// The first step: every device placed, nothing detailed.
pub fn sketch(root: &HostRoot) -> Result<Sketch, ScanError> {
    let host = scan::scan_parts(root, scan::Parts::Identity)?;
    Ok(Sketch {
        devices: host.devices.keys().copied().collect(),
        groups: host.groups.keys().copied().collect(),
        page_size: host.platform.page_size,
        moved: false,
        host,
    })
}

/// Reads what `work` lists, on every core of the calling pool.
pub fn read(root: &HostRoot, work: &Work) -> Result<Read, ScanError> {
    let devices = work
        .devices
        .par_iter()
        .map(|(a, dir)| Ok((*a, read_one(root, dir, work.page_size)?)))
        .collect::<Result<Vec<_>, ScanError>>()?;
    let groups = match work.groups.is_empty() {
        true => Vec::new(),
        false => match root.open_dir(scan::GROUPS) {
            Ok(gd) => work
                .groups
                .par_iter()
                .map(|g| (*g, scan::group_kind(&gd, *g)))
                .collect(),
            // As the whole scan: no groups directory, no types.
            Err(_) => work.groups.iter().map(|g| (*g, None)).collect(),
        },
    };
    Ok(Read { devices, groups })
}

fn read_one(root: &HostRoot, dir: &str, page_size: u64) -> Result<Option<Details>, ScanError> {
    match root.open_dir(dir) {
        Ok(h) => scan::read_details(root, &h, page_size).map(Some),
        Err(e) if scan::not_found(&e) => Ok(None),
        Err(e) => Err(scan::io_err(root, Path::new(dir), e)),
    }
}

impl Sketch {
    /// The host as far as it is read: see the module's words for what it is right about.
    pub fn so_far(&self) -> &Host {
        &self.host
    }

    /// Whether everything is read.
    pub fn is_whole(&self) -> bool {
        self.devices.is_empty() && self.groups.is_empty()
    }

    /// Reads what group `g`'s verdict reads and is not read yet: its members' details, the
    /// bridges' above them, and its type (the model `explain GROUP` reads,
    /// [`crate::scan::scan_target`]). Nothing for a group the host does not have.
    pub fn detail(&mut self, root: &HostRoot, g: GroupId) -> Result<(), ScanError> {
        let Some(group) = self.host.groups.get(&g) else {
            return Ok(());
        };
        let mut wanted: BTreeSet<PciAddress> = BTreeSet::new();
        for a in &group.devices {
            if let Some(d) = self.host.devices.get(a) {
                wanted.insert(*a);
                wanted.extend(d.bridges.iter().copied());
            }
        }
        let work = Work {
            devices: wanted
                .into_iter()
                .filter(|a| self.devices.contains(a))
                .filter_map(|a| Some((a, self.host.devices.get(&a)?.sysfs_path.clone())))
                .collect(),
            groups: self.groups.contains(&g).then_some(g).into_iter().collect(),
            page_size: self.page_size,
        };
        if work.is_empty() {
            return Ok(());
        }
        // A handful of reads: on this thread, not a pool's.
        let mut found = Read::default();
        for (a, dir) in &work.devices {
            found
                .devices
                .push((*a, read_one(root, dir, self.page_size)?));
        }
        for g in work.groups {
            let kind = root
                .open_dir(scan::GROUPS)
                .ok()
                .and_then(|gd| scan::group_kind(&gd, g));
            found.groups.push((g, kind));
        }
        self.put(found);
        Ok(())
    }

    /// What is left to read, for [`read`] on other threads.
    pub fn work(&self) -> Work {
        Work {
            devices: self
                .devices
                .iter()
                .filter_map(|a| Some((*a, self.host.devices.get(a)?.sysfs_path.clone())))
                .collect(),
            groups: self.groups.iter().copied().collect(),
            page_size: self.page_size,
        }
    }

    /// The whole host: what [`read`] found put in, where it is still missing (a group detailed
    /// meanwhile keeps what its card was made from).
    pub fn finish(mut self, read: Read) -> Finished {
        self.put(read);
        Finished {
            host: self.host,
            moved: self.moved,
        }
    }

    /// [`Sketch::work`] read on the calling pool and put in.
    pub fn finish_here(self, root: &HostRoot) -> Result<Finished, ScanError> {
        let found = read(root, &self.work())?;
        Ok(self.finish(found))
    }

    /// Puts `read` in; a device gone is left out (and its group with it when it was the last
    /// member), and remembered as a move.
    fn put(&mut self, read: Read) {
        let mut gone = false;
        for (a, details) in read.devices {
            if !self.devices.remove(&a) {
                continue;
            }
            match details {
                Some(x) => {
                    if let Some(d) = self.host.devices.get_mut(&a) {
                        x.fill(d);
                    }
                }
                // Removed since it was placed, as a whole scan run now would not see it; nor
                // its group, when it was the last member (the kernel removes the group's
                // directory with it).
                None => {
                    if let Some(d) = self.host.devices.remove(&a) {
                        if let Some(g) = d.group {
                            if let Some(grp) = self.host.groups.get_mut(&g) {
                                grp.devices.retain(|x| *x != a);
                                if grp.devices.is_empty() && grp.other_members.is_empty() {
                                    self.host.groups.remove(&g);
                                    self.groups.remove(&g);
                                }
                            }
                        }
                        gone = true;
                    }
                }
            }
        }
        if gone {
            scan::link_virtfns(&mut self.host.devices);
            self.moved = true;
        }
        for (g, kind) in read.groups {
            if self.groups.remove(&g) {
                if let Some(group) = self.host.groups.get_mut(&g) {
                    group.kind = kind;
                }
            }
        }
    }
}

/// A finished sketch.
#[derive(Debug)]
pub struct Finished {
    /// The whole host.
    pub host: Host,
    /// A device went away between the two steps (seen when its group's row was drawn, or by
    /// the rest): what was listed from the sketch (a group, a card made before) may show it
    /// still, and must be laid out again.
    pub moved: bool,
}
