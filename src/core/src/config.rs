//! PCI configuration space, parsed: the header and the capability lists.
//!
//! Everything here is derived from the `config` file's bytes. An unprivileged reader gets only
//! the first 64 bytes (the header), so every fact behind the capability pointer is an `Option`:
//! `None` means "unknown from what we could read", never "absent". The privileged helper reads
//! the whole space and fills the gaps (never sending raw bytes).
//!
//! The walk is defensive against hostile or corrupt bytes: pointers must be dword-aligned and
//! inside the buffer, and a bounded number of hops stops loops.

use serde::{Deserialize, Serialize};

/// Header size every reader sees.
pub const HEADER_LEN: usize = 64;
/// Conventional config space size.
pub const CONVENTIONAL_LEN: usize = 256;
/// Standard capability ids (PCI Local Bus spec, "Capability IDs").
const CAP_PM: u8 = 0x01;
const CAP_MSI: u8 = 0x05;
const CAP_SSVID: u8 = 0x0d;
const CAP_EXP: u8 = 0x10;
const CAP_MSIX: u8 = 0x11;
const CAP_AF: u8 = 0x13;
/// Extended capability ids.
const EXT_AER: u16 = 0x0001;
const EXT_ACS: u16 = 0x000d;
const EXT_SRIOV: u16 = 0x0010;
const EXT_DSN: u16 = 0x0003;
/// Hop limits: 48 standard capabilities fit in 192 bytes; 960 extended in 3840.
const MAX_STD_HOPS: usize = 48;
const MAX_EXT_HOPS: usize = 960;

/// ACS control bits the kernel requires on every port between a device and the root before it
/// gives the device its own group (`REQ_ACS_FLAGS` in drivers/pci/pci.c): Source Validation,
/// Request Redirect, Completion Redirect, Upstream Forwarding.
pub const ACS_REQUIRED: u16 = 0x0001 | 0x0004 | 0x0008 | 0x0010;

/// The PCIe Device/Port Type field of the PCI Express capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortType {
    Endpoint,
    LegacyEndpoint,
    RootPort,
    UpstreamPort,
    DownstreamPort,
    PcieToPciBridge,
    PciToPcieBridge,
    RootComplexEndpoint,
    RootComplexEventCollector,
    Other,
}

impl PortType {
    fn from_bits(v: u8) -> Self {
        match v {
            0x0 => Self::Endpoint,
            0x1 => Self::LegacyEndpoint,
            0x4 => Self::RootPort,
            0x5 => Self::UpstreamPort,
            0x6 => Self::DownstreamPort,
            0x7 => Self::PcieToPciBridge,
            0x8 => Self::PciToPcieBridge,
            0x9 => Self::RootComplexEndpoint,
            0xa => Self::RootComplexEventCollector,
            _ => Self::Other,
        }
    }

    /// The bits as written in the capability (for building test trees).
    pub fn bits(self) -> u8 {
        match self {
            Self::Endpoint => 0x0,
            Self::LegacyEndpoint => 0x1,
            Self::RootPort => 0x4,
            Self::UpstreamPort => 0x5,
            Self::DownstreamPort => 0x6,
            Self::PcieToPciBridge => 0x7,
            Self::PciToPcieBridge => 0x8,
            Self::RootComplexEndpoint => 0x9,
            Self::RootComplexEventCollector => 0xa,
            Self::Other => 0xf,
        }
    }
}

/// ACS as the kernel sees it: what the port can do and what is switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acs {
    pub capability: u16,
    pub control: u16,
}

impl Acs {
    /// True when the bits the kernel needs for isolation are all enabled.
    pub fn isolates(&self) -> bool {
        self.control & ACS_REQUIRED == ACS_REQUIRED
    }
}

/// A PCIe Device Serial Number, printed as lspci prints it: eight bytes, most significant
/// first, dash-separated (`00-1b-21-ff-ff-8a-5c-10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SerialNumber(pub u64);

impl std::fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0.to_be_bytes();
        write!(
            f,
            "{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

impl std::str::FromStr for SerialNumber {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() != 8 || parts.iter().any(|p| p.len() != 2) {
            return Err(format!(
                "“{}” is not a device serial number (xx-xx-xx-xx-xx-xx-xx-xx)",
                s.chars().take(40).collect::<String>()
            ));
        }
        let mut v = 0u64;
        for p in parts {
            v = v << 8 | u64::from(u8::from_str_radix(p, 16).map_err(|e| e.to_string())?);
        }
        Ok(SerialNumber(v))
    }
}

impl Serialize for SerialNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SerialNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Facts from the capability lists. `None` = unknown (not readable), never "absent".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Power management capability present.
    pub pm: Option<bool>,
    /// D3hot→D0 performs a reset (PM capability without No_Soft_Reset): the kernel's `pm` reset.
    pub pm_reset: Option<bool>,
    pub msi: Option<bool>,
    pub msix: Option<bool>,
    /// PCI Express capability present.
    pub express: Option<bool>,
    /// PCIe device/port type; `None` when not PCIe or unknown (see `express`).
    pub port_type: Option<PortType>,
    /// Function Level Reset, from the PCIe Device Capabilities or the Advanced Features cap.
    pub flr: Option<bool>,
    /// Advanced Error Reporting.
    pub aer: Option<bool>,
    /// Access Control Services: `Some(None)` = known absent. In JSON: `null` unknown, `false`
    /// absent, else `{"capability", "control"}`.
    #[serde(with = "acs_json")]
    pub acs: Option<Option<Acs>>,
    /// SR-IOV: `Some(0)` = known absent, else the TotalVFs the PF supports.
    pub sriov_total_vfs: Option<u16>,
    /// INTx pin: 0 none, 1–4 = INTA–INTD. Always in the header.
    pub intx_pin: u8,
    /// The PCIe Device Serial Number (extended capability 3), where the card has one and the
    /// extended space could be read (as root): what tells two identical cards apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<SerialNumber>,
    /// PCI 2.3 "Interrupt Disable" support, needed for VFIO to share INTx. Every PCIe function
    /// has it; for conventional PCI only a write test tells, so it stays unknown.
    pub intx_disable: Option<bool>,
}

mod acs_json {
    use super::Acs;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Absent(bool),
        Present(Acs),
    }

    pub fn serialize<S: Serializer>(v: &Option<Option<Acs>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(None) => s.serialize_bool(false),
            Some(Some(a)) => a.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Acs>>, D::Error> {
        Ok(match Option::<Wire>::deserialize(d)? {
            None => None,
            Some(Wire::Absent(false)) => Some(None),
            Some(Wire::Absent(true)) => {
                return Err(serde::de::Error::custom("acs is null, false or an object"))
            }
            Some(Wire::Present(a)) => Some(Some(a)),
        })
    }
}

/// The parsed configuration space of one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSpace {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision: u8,
    /// Class code, 24 bits: class, subclass, programming interface.
    pub class: u32,
    /// Header type without the multifunction bit: 0 normal, 1 PCI bridge, 2 CardBus.
    pub header_type: u8,
    pub multifunction: bool,
    pub subsystem: Option<(u16, u16)>,
    /// Secondary and subordinate bus of a bridge.
    pub bus_range: Option<(u8, u8)>,
    /// How many bytes were readable (64 unprivileged, 256 or 4096 as root).
    pub readable: usize,
    pub caps: Capabilities,
}

/// Why bytes are not a configuration space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config space is {0} bytes, shorter than the 64-byte header")]
    Short(usize),
    #[error("config space reads as all ones (the device is gone or powered off)")]
    Absent,
}

fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}
fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(off)?, *b.get(off + 1)?]))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(off)?,
        *b.get(off + 1)?,
        *b.get(off + 2)?,
        *b.get(off + 3)?,
    ]))
}

impl ConfigSpace {
    /// Parses a config file's bytes. Only the header is required; anything the capability
    /// pointers lead to beyond the readable length is reported unknown.
    pub fn parse(b: &[u8]) -> Result<Self, ConfigError> {
        if b.len() < HEADER_LEN {
            return Err(ConfigError::Short(b.len()));
        }
        let get16 = |o| u16_at(b, o).unwrap_or(0);
        let vendor_id = get16(0x00);
        if vendor_id == 0xffff {
            return Err(ConfigError::Absent);
        }
        let header = u8_at(b, 0x0e).unwrap_or(0);
        let header_type = header & 0x7f;
        let class = u32_at(b, 0x08).unwrap_or(0) >> 8;
        let (subsystem, bus_range) = match header_type {
            0 => (Some((get16(0x2c), get16(0x2e))), None),
            1 => (
                None,
                Some((u8_at(b, 0x19).unwrap_or(0), u8_at(b, 0x1a).unwrap_or(0))),
            ),
            2 => (Some((get16(0x40), get16(0x42))), None),
            _ => (None, None),
        };
        let mut cfg = ConfigSpace {
            vendor_id,
            device_id: get16(0x02),
            revision: u8_at(b, 0x08).unwrap_or(0),
            class,
            header_type,
            multifunction: header & 0x80 != 0,
            subsystem,
            bus_range,
            readable: b.len(),
            caps: Capabilities {
                intx_pin: u8_at(b, 0x3d).unwrap_or(0),
                ..Default::default()
            },
        };
        cfg.walk_standard(b);
        cfg.walk_extended(b);
        Ok(cfg)
    }

    fn walk_standard(&mut self, b: &[u8]) {
        let status = u16_at(b, 0x06).unwrap_or(0);
        let c = &mut self.caps;
        if status & 0x0010 == 0 {
            // No capability list at all: every standard capability is known absent.
            c.pm = Some(false);
            c.pm_reset = Some(false);
            c.msi = Some(false);
            c.msix = Some(false);
            c.express = Some(false);
            c.flr = Some(false);
            c.aer = Some(false);
            c.acs = Some(None);
            c.sriov_total_vfs = Some(0);
            return;
        }
        let first = if self.header_type == 2 { 0x14 } else { 0x34 };
        let mut ptr = u8_at(b, first).unwrap_or(0) as usize & !3;
        let (mut pm, mut msi, mut msix, mut exp, mut af_flr) = (false, false, false, false, false);
        let mut complete = false;
        for _ in 0..MAX_STD_HOPS {
            if ptr == 0 {
                complete = true;
                break;
            }
            if ptr < HEADER_LEN || ptr + 2 > b.len() {
                break; // beyond what we could read (or garbage): the rest is unknown
            }
            let id = b[ptr];
            match id {
                CAP_PM => {
                    pm = true;
                    if let Some(pmcsr) = u16_at(b, ptr + 4) {
                        c.pm_reset = Some(pmcsr & 0x0008 == 0);
                    }
                }
                CAP_MSI => msi = true,
                CAP_MSIX => msix = true,
                CAP_SSVID if self.header_type == 1 => {
                    if let (Some(v), Some(d)) = (u16_at(b, ptr + 4), u16_at(b, ptr + 6)) {
                        self.subsystem = Some((v, d));
                    }
                }
                CAP_EXP => {
                    exp = true;
                    if let Some(flags) = u16_at(b, ptr + 2) {
                        c.port_type = Some(PortType::from_bits(((flags >> 4) & 0xf) as u8));
                    }
                    if let Some(devcap) = u32_at(b, ptr + 4) {
                        c.flr = Some(devcap & (1 << 28) != 0);
                    }
                }
                // Advanced Features: the kernel's af_flr wants both Transactions Pending and
                // FLR.
                CAP_AF if u8_at(b, ptr + 3).is_some_and(|v| v & 0x03 == 0x03) => af_flr = true,
                _ => {}
            }
            ptr = b[ptr + 1] as usize & !3;
        }
        if complete {
            c.pm = Some(pm);
            c.msi = Some(msi);
            c.msix = Some(msix);
            c.express = Some(exp);
            if !pm {
                c.pm_reset = Some(false);
            }
            c.flr = Some(c.flr.unwrap_or(false) || af_flr);
            if exp {
                c.intx_disable = Some(true);
            } else {
                // Conventional PCI: no extended space, so these are known absent.
                c.aer = Some(false);
                c.acs = Some(None);
                c.sriov_total_vfs = Some(0);
            }
        } else {
            if pm {
                c.pm = Some(true);
            }
            if msi {
                c.msi = Some(true);
            }
            if msix {
                c.msix = Some(true);
            }
            if exp {
                c.express = Some(true);
                c.intx_disable = Some(true);
            }
            if af_flr {
                c.flr = Some(true);
            }
        }
    }

    fn walk_extended(&mut self, b: &[u8]) {
        if self.caps.express != Some(true) || b.len() <= CONVENTIONAL_LEN {
            return;
        }
        let c = &mut self.caps;
        let (mut aer, mut acs, mut sriov) = (false, None, 0u16);
        let mut off = 0x100usize;
        let mut complete = false;
        for _ in 0..MAX_EXT_HOPS {
            let Some(hdr) = u32_at(b, off) else { break };
            // An all-zero (or all-ones) first header means "no extended capabilities".
            if hdr == 0 || hdr == 0xffff_ffff {
                complete = true;
                break;
            }
            let id = (hdr & 0xffff) as u16;
            match id {
                EXT_AER => aer = true,
                EXT_ACS => {
                    if let (Some(cap), Some(ctl)) = (u16_at(b, off + 4), u16_at(b, off + 6)) {
                        acs = Some(Acs {
                            capability: cap,
                            control: ctl,
                        });
                    }
                }
                EXT_SRIOV => sriov = u16_at(b, off + 0x0e).unwrap_or(0).max(1),
                EXT_DSN => {
                    if let (Some(lo), Some(hi)) = (u32_at(b, off + 4), u32_at(b, off + 8)) {
                        c.serial_number = Some(SerialNumber(u64::from(hi) << 32 | u64::from(lo)));
                    }
                }
                _ => {}
            }
            let next = (hdr >> 20) as usize & !3;
            if next == 0 {
                complete = true;
                break;
            }
            if next < CONVENTIONAL_LEN || next <= off {
                break; // pointers only go forward in sane devices; anything else is garbage
            }
            off = next;
        }
        if complete {
            c.aer = Some(aer);
            c.acs = Some(acs);
            c.sriov_total_vfs = Some(sriov);
        } else {
            if aer {
                c.aer = Some(true);
            }
            if let Some(a) = acs {
                c.acs = Some(Some(a));
            }
            if sriov > 0 {
                c.sriov_total_vfs = Some(sriov);
            }
        }
    }

    /// Class code as the sysfs `class` file prints it, without `0x`.
    pub fn class_hex(&self) -> String {
        format!("{:06x}", self.class)
    }
}

/// A config-space writer for test trees and the demo host: the inverse of [`ConfigSpace::parse`]
/// for the facts Passage reads. Kept in the library because `--demo` and the benchmark build
/// trees with it too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigSpec {
    /// Write 4096 bytes (as root reads a PCIe function) instead of the 64 a user reads.
    pub full: bool,
    pub port_type: Option<PortType>,
    pub pm: bool,
    pub pm_no_soft_reset: bool,
    pub msi: bool,
    pub msix: bool,
    pub flr: bool,
    pub aer: bool,
    /// ACS control bits enabled (and advertised); `None` = no ACS capability.
    pub acs: Option<u16>,
    pub sriov_total_vfs: u16,
    pub intx_pin: u8,
    /// A Device Serial Number capability with this number.
    pub serial_number: Option<u64>,
}

impl ConfigSpec {
    /// Builds the bytes of a config space for the given identity.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        vendor: u16,
        device: u16,
        class: u32,
        revision: u8,
        subsystem: (u16, u16),
        bridge: bool,
        multifunction: bool,
        bus_range: (u8, u8),
    ) -> Vec<u8> {
        let len = if self.full {
            if self.port_type.is_some() {
                4096
            } else {
                CONVENTIONAL_LEN
            }
        } else {
            HEADER_LEN
        };
        let mut b = vec![0u8; len.max(CONVENTIONAL_LEN)];
        b[0..2].copy_from_slice(&vendor.to_le_bytes());
        b[2..4].copy_from_slice(&device.to_le_bytes());
        b[8] = revision;
        b[9..12].copy_from_slice(&class.to_le_bytes()[0..3]);
        b[0x0e] = u8::from(bridge) | if multifunction { 0x80 } else { 0 };
        if bridge {
            b[0x19] = bus_range.0;
            b[0x1a] = bus_range.1;
        } else {
            b[0x2c..0x2e].copy_from_slice(&subsystem.0.to_le_bytes());
            b[0x2e..0x30].copy_from_slice(&subsystem.1.to_le_bytes());
        }
        b[0x3d] = self.intx_pin;
        // Standard capabilities from 0x40 in steps of 0x10.
        let mut caps: Vec<(u8, Vec<u8>)> = Vec::new();
        if self.pm {
            let pmcsr: u16 = if self.pm_no_soft_reset { 0x0008 } else { 0 };
            let mut body = vec![0x03, 0x00];
            body.extend_from_slice(&pmcsr.to_le_bytes());
            caps.push((CAP_PM, body));
        }
        if self.msi {
            caps.push((CAP_MSI, vec![0; 6]));
        }
        if self.msix {
            caps.push((CAP_MSIX, vec![0; 6]));
        }
        if let Some(pt) = self.port_type {
            let flags: u16 = 0x0002 | ((pt.bits() as u16) << 4);
            let devcap: u32 = if self.flr { 1 << 28 } else { 0 };
            let mut body = flags.to_le_bytes().to_vec();
            body.extend_from_slice(&devcap.to_le_bytes());
            caps.push((CAP_EXP, body));
        } else if self.flr {
            caps.push((CAP_AF, vec![0x06, 0x03]));
        }
        if !self.full {
            // What an unprivileged reader sees of a real device: the header says there is a
            // capability list at 0x40, which lies beyond the 64 readable bytes.
            b[0x06] |= 0x10;
            b[0x34] = 0x40;
        }
        if !caps.is_empty() {
            b[0x06] |= 0x10;
            b[0x34] = 0x40;
            let n = caps.len();
            for (i, (id, body)) in caps.into_iter().enumerate() {
                let at = 0x40 + i * 0x10;
                b[at] = id;
                b[at + 1] = if i + 1 < n { (at + 0x10) as u8 } else { 0 };
                b[at + 2..at + 2 + body.len()].copy_from_slice(&body);
            }
        }
        if self.full && self.port_type.is_some() {
            let mut ext: Vec<(u16, Vec<u8>)> = Vec::new();
            if self.aer {
                ext.push((EXT_AER, vec![0; 0x34]));
            }
            if let Some(ctl) = self.acs {
                let mut body = ctl.to_le_bytes().to_vec();
                body.extend_from_slice(&ctl.to_le_bytes());
                ext.push((EXT_ACS, body));
            }
            if self.sriov_total_vfs > 0 {
                let mut body = vec![0u8; 0x3c];
                body[0x0e - 4..0x10 - 4].copy_from_slice(&self.sriov_total_vfs.to_le_bytes());
                body[0x0c - 4..0x0e - 4].copy_from_slice(&self.sriov_total_vfs.to_le_bytes());
                ext.push((EXT_SRIOV, body));
            }
            if let Some(sn) = self.serial_number {
                ext.push((EXT_DSN, sn.to_le_bytes().to_vec()));
            }
            let n = ext.len();
            for (i, (id, body)) in ext.into_iter().enumerate() {
                let at = 0x100 + i * 0x40;
                let next = if i + 1 < n { (at + 0x40) as u32 } else { 0 };
                let hdr = id as u32 | (1 << 16) | (next << 20);
                b[at..at + 4].copy_from_slice(&hdr.to_le_bytes());
                b[at + 4..at + 4 + body.len()].copy_from_slice(&body);
            }
        }
        b.truncate(len);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_serial_number_is_read_from_the_extended_space_and_printed_as_lspci_does() {
        let s = ConfigSpec {
            serial_number: Some(0x001b_21ff_ff8a_5c10),
            ..spec()
        };
        let b = s.build(
            0x8086,
            0x1521,
            0x020000,
            1,
            (0x8086, 0),
            false,
            false,
            (0, 0),
        );
        // The capability as the PCIe spec lays it out: the lower dword at +4, the upper at +8,
        // each little-endian.
        let at = (0x100..b.len())
            .step_by(0x40)
            .find(|&o| u16::from_le_bytes([b[o], b[o + 1]]) == EXT_DSN)
            .expect("a DSN capability");
        assert_eq!(
            b[at + 4..at + 12],
            [0x10, 0x5c, 0x8a, 0xff, 0xff, 0x21, 0x1b, 0x00]
        );
        let c = ConfigSpace::parse(&b).unwrap();
        let sn = c.caps.serial_number.unwrap();
        assert_eq!(sn.to_string(), "00-1b-21-ff-ff-8a-5c-10");
        assert_eq!(
            "00-1b-21-ff-ff-8a-5c-10".parse::<SerialNumber>().unwrap(),
            sn
        );
        assert!("00-1b-21".parse::<SerialNumber>().is_err());
        assert!("zz-1b-21-ff-ff-8a-5c-10".parse::<SerialNumber>().is_err());
        // Read as a user (64 bytes): unknown, never made up.
        let short = ConfigSpec { full: false, ..s };
        let b = short.build(
            0x8086,
            0x1521,
            0x020000,
            1,
            (0x8086, 0),
            false,
            false,
            (0, 0),
        );
        assert_eq!(ConfigSpace::parse(&b).unwrap().caps.serial_number, None);
    }

    fn spec() -> ConfigSpec {
        ConfigSpec {
            full: true,
            port_type: Some(PortType::Endpoint),
            pm: true,
            msi: true,
            msix: true,
            flr: true,
            aer: true,
            acs: None,
            sriov_total_vfs: 7,
            intx_pin: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_full_space_round_trips_every_fact() {
        let bytes = spec().build(
            0x8086,
            0x10fb,
            0x020000,
            1,
            (0x8086, 0x0003),
            false,
            true,
            (0, 0),
        );
        assert_eq!(bytes.len(), 4096);
        let c = ConfigSpace::parse(&bytes).unwrap();
        assert_eq!(
            (c.vendor_id, c.device_id, c.class),
            (0x8086, 0x10fb, 0x020000)
        );
        assert!(c.multifunction);
        assert_eq!(c.subsystem, Some((0x8086, 0x0003)));
        let k = &c.caps;
        assert_eq!(k.pm, Some(true));
        assert_eq!(k.pm_reset, Some(true));
        assert_eq!(k.express, Some(true));
        assert_eq!(k.port_type, Some(PortType::Endpoint));
        assert_eq!(k.flr, Some(true));
        assert_eq!(k.aer, Some(true));
        assert_eq!(k.acs, Some(None));
        assert_eq!(k.sriov_total_vfs, Some(7));
        assert_eq!(k.intx_disable, Some(true));
    }

    #[test]
    fn the_unprivileged_header_leaves_capabilities_unknown() {
        let mut s = spec();
        s.full = false;
        let bytes = s.build(
            0x10de,
            0x2206,
            0x030000,
            0xa1,
            (0x1458, 0x403b),
            false,
            true,
            (0, 0),
        );
        assert_eq!(bytes.len(), 64);
        let c = ConfigSpace::parse(&bytes).unwrap();
        assert_eq!(c.device_id, 0x2206);
        assert_eq!(c.caps.express, None);
        assert_eq!(c.caps.flr, None);
        assert_eq!(c.caps.acs, None);
        assert_eq!(c.caps.intx_pin, 1);
    }

    #[test]
    fn a_root_port_with_acs_isolates() {
        let s = ConfigSpec {
            full: true,
            port_type: Some(PortType::RootPort),
            acs: Some(0x001f),
            ..Default::default()
        };
        let c =
            ConfigSpace::parse(&s.build(0x8086, 0x1901, 0x060400, 0, (0, 0), true, false, (1, 1)))
                .unwrap();
        assert_eq!(c.bus_range, Some((1, 1)));
        assert!(c.caps.acs.unwrap().unwrap().isolates());
        let s = ConfigSpec {
            acs: Some(0x0001),
            ..s
        };
        let c =
            ConfigSpace::parse(&s.build(0x8086, 0x1901, 0x060400, 0, (0, 0), true, false, (1, 1)))
                .unwrap();
        assert!(!c.caps.acs.unwrap().unwrap().isolates());
    }

    #[test]
    fn loops_and_garbage_pointers_end_in_unknown() {
        let mut b = vec![0u8; 256];
        b[0] = 0x86;
        b[1] = 0x80;
        b[6] = 0x10;
        b[0x34] = 0x40;
        b[0x40] = CAP_PM;
        b[0x41] = 0x40; // points at itself
        let c = ConfigSpace::parse(&b).unwrap();
        assert_eq!(c.caps.pm, Some(true));
        assert_eq!(c.caps.express, None);
        assert_eq!(ConfigSpace::parse(&[0u8; 10]), Err(ConfigError::Short(10)));
        assert_eq!(ConfigSpace::parse(&[0xffu8; 64]), Err(ConfigError::Absent));
    }
}
