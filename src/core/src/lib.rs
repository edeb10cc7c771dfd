//! Passage's core: host topology, explanations, plans and exports.
//!
//! No GTK, no zbus and no tokio here (the crate graph keeps it so): the app, the command line
//! and the privileged helper are front ends over this library. See docs/ARCHITECTURE.md.

pub mod address;
pub mod apply;
pub mod bootline;
pub mod cli;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod explain;
pub mod export;
pub mod hook;
pub mod host;
pub mod i18n;
pub mod model;
pub mod names;
pub mod pci_names;
pub mod plan;
pub mod report;
pub mod scan;
pub mod session;
pub mod sketch;
pub mod store;
pub mod synth;
pub mod topology;
pub mod usage;
pub mod vfio;
pub mod view;
pub mod watch;

pub use address::{GroupId, PciAddress, Remote, Target};
pub use host::HostRoot;
pub use model::Host;
