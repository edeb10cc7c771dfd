//! Assignment plans: which guest gets which IOMMU groups, and how each device looks inside it.
//!
//! A plan is plain serde data saved as JSON (docs/JSON.md, "Plans"). It names devices by host
//! address *and* by vendor/device/subsystem ids, so a plan reopened on a host whose cards moved,
//! changed or regrouped says so device by device instead of silently giving a guest the wrong
//! card. The group stays the unit: [`Plan::assign`] always takes a whole group, hidden devices
//! stay in it (claimed, shown as held), and [`check`] refuses a group split between guests.
//!
//! Decisions live here so the CLI and the GUI make the same ones: every edit is a method that
//! either changes the plan or says why not, and [`check`] returns problems with stable codes,
//! sentences and remedies (like [`crate::explain`]'s reasons).
//!
//! The module's files: `types.rs` (the plan's data and file format), `edit.rs` (edits and
//! `try_edit`), `resolve.rs` (guest addresses placed), `check.rs` (problems), `remap.rs` (a
//! planned group found again where its cards are now).

mod check;
mod edit;
mod memlock;
mod remap;
mod resolve;
mod types;

pub use check::{check, Problem, Severity};
pub use edit::{assignable_members, claimed_members};
pub use memlock::memlock;
pub use remap::{drift, Drift, Remap};
pub use resolve::{resolve, resolve_as, resolve_in, ResolvedDevice, ResolvedGuest, Room};
pub use types::{
    check_guest_name, DevicePlan, GroupPlan, Guest, GuestAddress, Layout, Lifecycle, Plan,
    PlanError, Vmm, FLAT_FIRST_SLOT, MAX_GUESTS, MAX_GUEST_NAME, PLAN_VERSION,
};
