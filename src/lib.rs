//! Passage's core: host topology, explanations, plans, exports, and the claim engine.
//!
//! No GTK and no zbus here: the GUI, the CLI and the privileged helper are thin front ends over
//! this library. See docs/ARCHITECTURE.md for the map.

pub mod address;
pub mod apply;
pub mod claim;
pub mod cli;
pub mod config;
#[cfg(feature = "dbus")]
pub mod dbus;
pub mod demo;
pub mod explain;
pub mod export;
pub mod fakekernel;
#[cfg(feature = "gui")]
pub mod gui;
pub mod hook;
pub mod host;
pub mod i18n;
#[cfg(feature = "dbus")]
pub mod libvirt;
pub mod model;
pub mod names;
pub mod pci_names;
pub mod persist;
pub mod plan;
pub mod report;
pub mod scan;
pub mod store;
pub mod synth;
pub mod usage;
pub mod vfio;
pub mod view;
pub mod watch;

pub use address::{GroupId, PciAddress, Target};
pub use host::HostRoot;
pub use model::Host;
