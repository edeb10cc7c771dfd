//! libvirt's qemu hook: for guests whose lifecycle is "claimed when the guest starts", claim
//! their groups when libvirt prepares the guest and give them back when it has released it.
//!
//! libvirt runs `/etc/libvirt/hooks/qemu.d/passage GUEST OP SUBOP EXTRA` with the domain's
//! XML on standard input (data/libvirt/qemu-hook.in calls `passagectl hook-qemu`). This module
//! only decides; the CLI asks the helper. The domain's `<hostdev managed='no'>` entries name
//! the devices; the lifecycle comes from Passage's metadata, so domains Passage never wrote
//! are never touched.

use crate::export::libvirt::{hostdevs, lifecycle, DomainXmlError};
use crate::i18n::trf;
use crate::model::Host;
use crate::plan::Lifecycle;
use crate::GroupId;
use std::collections::BTreeSet;

/// What the hook does for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Claim these groups (libvirt's `prepare begin`, before QEMU starts).
    Claim(Vec<GroupId>),
    /// Give them back (`release end`, after QEMU has gone).
    Release(Vec<GroupId>),
    /// Not ours to act on.
    Nothing,
}

/// Why the hook refuses to let the guest start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Xml(#[from] DomainXmlError),
    #[error("{0}")]
    Device(String),
}

/// Decides what libvirt's call means for this host.
pub fn decide(op: &str, subop: &str, domain_xml: &str, host: &Host) -> Result<Action, HookError> {
    let claim = match (op, subop) {
        ("prepare", "begin") => true,
        ("release", "end") => false,
        _ => return Ok(Action::Nothing),
    };
    if lifecycle(domain_xml) != Some(Lifecycle::OnStart) {
        return Ok(Action::Nothing);
    }
    let mut groups = BTreeSet::new();
    for h in hostdevs(domain_xml)?.iter().filter(|h| !h.managed) {
        match host.device(h.source).and_then(|d| d.group) {
            Some(g) => {
                groups.insert(g);
            }
            None if claim => {
                return Err(HookError::Device(trf(
                    "the guest names host device {device}, which this host does not have (or has in no IOMMU group); Passage cannot claim it",
                    &[("device", &h.source.to_string())],
                )))
            }
            // Gone while the guest ran: nothing of it is left to give back.
            None => {}
        }
    }
    let groups: Vec<GroupId> = groups.into_iter().collect();
    Ok(if groups.is_empty() {
        Action::Nothing
    } else if claim {
        Action::Claim(groups)
    } else {
        Action::Release(groups)
    })
}
