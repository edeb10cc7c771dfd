//! Locked memory: a VMM that passes a device through pins the guest's memory for the device's
//! DMA (VFIO maps all of it into the IOMMU), and the kernel refuses to pin more than the
//! process's `RLIMIT_MEMLOCK`. libvirt raises that limit for its system domains itself (their
//! memory plus 1 GiB, more with a virtual IOMMU); a process with `CAP_IPC_LOCK` (root) has no
//! limit; anything else started by an ordinary user runs under that user's limit — 8 MiB by
//! default — and QEMU then fails with "VFIO_MAP_DMA failed: Cannot allocate memory". This says
//! so before the guest starts. What is weighed is the least the guest needs (its memory plus
//! 1 GiB): a virtual IOMMU pins the memory again per device, and iommufd counts BARs too.

use super::check::Problem;
use super::types::{Plan, Vmm};
use crate::i18n::{tr, trf};

/// What a guest's VMM will pin beyond its memory: room for the devices' own mappings, as
/// libvirt reserves it.
const MARGIN_MIB: u64 = 1024;

/// The VMM as its makers write it.
fn vmm_name(v: Vmm) -> &'static str {
    match v {
        Vmm::Qemu => "QEMU",
        other => other.as_str(),
    }
}

/// A size in words: `16 GiB`, `512 MiB`, `64 KiB`.
fn size(bytes: u64) -> String {
    const K: u64 = 1024;
    if bytes >= K * K * K && bytes.is_multiple_of(K * K * K) {
        format!("{} GiB", bytes / (K * K * K))
    } else if bytes >= K * K {
        format!("{} MiB", bytes / (K * K))
    } else {
        format!("{} KiB", bytes / K)
    }
}

/// Warnings for the guests whose VMM would run out of locked memory under `limit` (bytes;
/// `None`: unlimited) — the limit of the user who runs the check, which is the one a VMM they
/// start inherits. libvirt's domains and the VMMs whose managers run them (Proxmox, KubeVirt,
/// Nova) set their own.
pub fn memlock(plan: &Plan, limit: Option<u64>) -> Vec<Problem> {
    let Some(limit) = limit else {
        return Vec::new();
    };
    let remedy = tr("Start it where it may lock that much: as root (which may lock any amount), or raise the limit for the user who starts it — a line “NAME - memlock unlimited” in /etc/security/limits.conf, taking effect at the next login — or LimitMEMLOCK=infinity in the systemd unit that runs it. libvirt does this by itself for its system domains.");
    plan.guests
        .iter()
        // A guest that is given no device (every one hidden) pins nothing for devices.
        .filter(|g| {
            g.groups
                .iter()
                .flat_map(|p| &p.devices)
                .any(|d| d.visible)
        })
        .filter(|g| matches!(g.vmm, Vmm::Qemu | Vmm::Crosvm | Vmm::CloudHypervisor))
        .filter_map(|g| {
            let (need, message) = match g.memory_mib {
                Some(mib) => {
                    let need = mib.saturating_add(MARGIN_MIB).saturating_mul(1024 * 1024);
                    (need, trf(
                        "{vmm} will pin all of {guest}'s memory for its devices ({memory}, plus room for the devices' mappings: at least {need}), but a process started here may lock only {limit} (RLIMIT_MEMLOCK): the guest would fail to start (“VFIO_MAP_DMA failed: Cannot allocate memory”).",
                        &[("vmm", vmm_name(g.vmm)), ("guest", &g.name), ("memory", &size(mib.saturating_mul(1024 * 1024))), ("need", &size(need)), ("limit", &size(limit))],
                    ))
                }
                // Unknown memory: any real guest needs more than a GiB.
                None => (MARGIN_MIB * 1024 * 1024, trf(
                    "{vmm} will pin all of {guest}'s memory for its devices, but a process started here may lock only {limit} (RLIMIT_MEMLOCK), less than any guest needs. Give its profile a memory size to check exactly (passagectl guests remove {guest}, then passagectl guests add {guest} --vmm {vmm_word} --memory 16G).",
                    &[("vmm", vmm_name(g.vmm)), ("guest", &g.name), ("limit", &size(limit)), ("vmm_word", g.vmm.as_str())],
                )),
            };
            (limit < need).then(|| {
                Problem::warning("locked-memory", message)
                    .guest(&g.name)
                    .remedy(remedy.clone())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{GroupPlan, Guest};
    use crate::GroupId;

    fn plan(vmm: Vmm, memory_mib: Option<u64>) -> Plan {
        let mut g = Guest::new("vm1", vmm).unwrap();
        g.memory_mib = memory_mib;
        let host =
            crate::demo::Source::open(Some(crate::demo::DemoHost::Workstation), None).unwrap();
        let host = crate::scan::scan(host.root()).unwrap();
        let gpu = host.device("0000:0b:00.0".parse().unwrap()).unwrap();
        g.groups.push(GroupPlan {
            group: GroupId(19),
            force: false,
            devices: vec![super::super::types::DevicePlan::from_device(gpu)],
        });
        Plan {
            guests: vec![g],
            ..Plan::default()
        }
    }

    #[test]
    fn a_guest_that_would_not_fit_under_the_limit_is_warned_with_both_sizes() {
        // A guest given no device (all hidden): nothing pinned for devices.
        let mut hidden = plan(Vmm::Qemu, Some(16 * 1024));
        for d in &mut hidden.guests[0].groups[0].devices {
            d.visible = false;
        }
        assert!(memlock(&hidden, Some(8 << 20)).is_empty());
        // Sizes beyond reason never overflow.
        assert_eq!(
            memlock(&plan(Vmm::Qemu, Some(u64::MAX)), Some(8 << 20)).len(),
            1
        );
        let p = memlock(&plan(Vmm::Qemu, Some(16 * 1024)), Some(8 * 1024 * 1024));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].code, "locked-memory");
        assert!(p[0].message.contains("16 GiB"), "{}", p[0].message);
        assert!(p[0].message.contains("17 GiB"), "{}", p[0].message);
        assert!(p[0].message.contains("8 MiB"), "{}", p[0].message);
        assert!(p[0]
            .remedy
            .as_deref()
            .is_some_and(|r| r.contains("LimitMEMLOCK=infinity")));
        // Enough, or unlimited: nothing to say.
        assert!(memlock(&plan(Vmm::Qemu, Some(16 * 1024)), Some(17 << 30)).is_empty());
        assert!(memlock(&plan(Vmm::Qemu, Some(16 * 1024)), None).is_empty());
        // Unknown memory under a small limit: said, with how to check exactly.
        let p = memlock(&plan(Vmm::Crosvm, None), Some(64 << 10));
        assert!(p[0].message.contains("--memory"), "{}", p[0].message);
    }

    #[test]
    fn vmms_that_set_their_own_limit_are_left_alone() {
        for vmm in [Vmm::Libvirt, Vmm::Proxmox, Vmm::Kubevirt, Vmm::Nova] {
            assert!(memlock(&plan(vmm, Some(16 * 1024)), Some(8 << 20)).is_empty());
        }
        // A guest holding nothing pins nothing for devices.
        let mut p = plan(Vmm::Qemu, Some(16 * 1024));
        p.guests[0].groups.clear();
        assert!(memlock(&p, Some(8 << 20)).is_empty());
    }
}
