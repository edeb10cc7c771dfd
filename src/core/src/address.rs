//! Strict value types for the things a person or a caller names: PCI addresses and group ids.
//!
//! Both parse fallibly with range checks and print canonically, so nothing that reaches a sysfs
//! path was ever a free-form string (a D-Bus argument, a CLI word, a plan file).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Why a string is not a PCI address or group id. Carries the offending text, cut short so a
/// hostile caller cannot make us echo megabytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("“{0}” is not a PCI address (expected DDDD:BB:SS.F, e.g. 0000:01:00.0, or BB:SS.F)")]
    Address(String),
    #[error("“{0}” is not an IOMMU group number")]
    Group(String),
    #[error("“{0}” is not a host to reach over SSH (expected HOST or USER@HOST: letters, digits, “.”, “-”, “_”, “:” for IPv6; no leading “-”; a port goes in ~/.ssh/config)")]
    Remote(String),
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).filter(|c| !c.is_control()).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// A PCI function address: domain, bus, device (slot), function.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl PciAddress {
    /// Builds an address, refusing a slot over 31 or a function over 7.
    pub fn new(domain: u32, bus: u8, slot: u8, function: u8) -> Option<Self> {
        (slot < 32 && function < 8).then_some(Self {
            domain,
            bus,
            slot,
            function,
        })
    }

    /// The same slot's function 0 (the function that carries the multifunction bit).
    pub fn function0(self) -> Self {
        Self {
            function: 0,
            ..self
        }
    }

    /// True when both are functions of one physical slot.
    pub fn same_slot(self, other: Self) -> bool {
        self.function0() == other.function0()
    }
}

impl PciAddress {
    /// `DDDD:BB:SS.F` (or `BB:SS.F` in domain 0), `None` for anything else. The scan asks this
    /// of every path component and listing entry (tens of thousands on a large host), so it
    /// allocates nothing, not even for a name that is not an address.
    pub fn parse_str(s: &str) -> Option<Self> {
        if s.len() > 16 || !s.is_ascii() {
            return None;
        }
        let hex = |t: &str, max_len: usize| -> Option<u32> {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(t, 16).ok()
        };
        let (head, rest) = s.rsplit_once(':')?;
        let (domain, bus) = match head.split_once(':') {
            Some((d, b)) => (hex(d, 8)?, b),
            None => (0, head),
        };
        let bus = hex(bus, 2)? as u8;
        let (slot, function) = rest.split_once('.')?;
        let slot = hex(slot, 2)?;
        let function = hex(function, 1)?;
        if slot > 31 || function > 7 {
            return None;
        }
        Some(Self {
            domain,
            bus,
            slot: slot as u8,
            function: function as u8,
        })
    }

    /// The address as sysfs writes it, without the formatting machinery (serializing a
    /// 10,000-function listing writes ~40,000 of them).
    fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> R {
        let mut buf = [0u8; 20];
        let mut n = 0;
        for (v, width, sep) in [
            (self.domain, 4, b':'),
            (u32::from(self.bus), 2, b':'),
            (u32::from(self.slot), 2, b'.'),
            (u32::from(self.function), 1, 0),
        ] {
            let digits = ((32 - v.leading_zeros()).div_ceil(4) as usize).max(width);
            for i in (0..digits).rev() {
                buf[n] = HEX[((v >> (4 * i)) & 0xf) as usize];
                n += 1;
            }
            if sep != 0 {
                buf[n] = sep;
                n += 1;
            }
        }
        // Only ASCII hex digits and separators were written.
        f(std::str::from_utf8(&buf[..n]).unwrap_or_default())
    }
}

/// Lowercase hex digits, for the allocation-free writers.
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

impl FromStr for PciAddress {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_str(s).ok_or_else(|| ParseError::Address(shorten(s)))
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|t| f.write_str(t))
    }
}

impl fmt::Debug for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.with_text(|t| s.serialize_str(t))
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IOMMU group number as the kernel names it (`/sys/kernel/iommu_groups/N`).
///
/// Parsing only proves it is a number; whether the group exists is looked up in a fresh scan.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub u32);

impl FromStr for GroupId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Group(shorten(s)));
        }
        s.parse::<u32>()
            .map(GroupId)
            .map_err(|_| ParseError::Group(shorten(s)))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {}", self.0)
    }
}

/// What a person typed where a device or a group is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Device(PciAddress),
    Group(GroupId),
}

impl FromStr for Target {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse().map(Target::Device)
        } else {
            s.parse()
                .map(Target::Group)
                .map_err(|_| ParseError::Address(shorten(s)))
        }
    }
}

/// Another machine, as `-H [USER@]HOST` names it (the systemd convention): what `ssh` is given
/// as its destination, and nothing else. Checked strictly, because the words go onto ssh's
/// command line: a leading `-` would be read as an option (`-oProxyCommand=…`), and spaces,
/// quotes or `/` have no place in a host or user name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Remote {
    pub user: Option<String>,
    pub host: String,
}

impl Remote {
    /// What ssh is given: `USER@HOST` or `HOST`.
    pub fn destination(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(u) => write!(f, "{u}@{}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl FromStr for Remote {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError::Remote(shorten(s));
        let (user, host) = match s.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, s),
        };
        let word = |w: &str, extra: &[char]| {
            !w.is_empty()
                && w.len() <= 253
                && !w.starts_with(['-', '.'])
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(&c))
        };
        // An IPv6 literal may come in brackets, as in URLs; ssh takes it bare.
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        // A colon only as IPv6 has it (two or more): `host:2222` is a port, which ssh does not
        // take in the destination (put it in ~/.ssh/config).
        let colons = bare.matches(':').count();
        if !word(bare, &[':']) || colons == 1 || user.is_some_and(|u| !word(u, &[])) {
            return Err(bad());
        }
        Ok(Remote {
            user: user.map(str::to_string),
            host: bare.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_hosts_are_what_ssh_takes_as_a_destination_and_nothing_else() {
        for (text, shown) in [
            ("pve1", "pve1"),
            ("root@pve1.lan", "root@pve1.lan"),
            ("admin_1@10.0.0.7", "admin_1@10.0.0.7"),
            ("[fe80::1]", "fe80::1"),
            ("me@::1", "me@::1"),
        ] {
            let r: Remote = text.parse().unwrap();
            assert_eq!(r.to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "@host",
            "user@",
            "-oProxyCommand=sh",
            "root@-oProxyCommand=sh",
            "-l@host",
            "host name",
            "host;reboot",
            "a/b",
            "host\n",
            ".hidden",
            "user@host@",
            "pve1:2222",
        ] {
            assert!(
                matches!(bad.parse::<Remote>(), Err(ParseError::Remote(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn parses_and_prints_canonically() {
        let a: PciAddress = "0000:0A:1f.7".parse().unwrap();
        assert_eq!(a.to_string(), "0000:0a:1f.7");
        let short: PciAddress = "01:00.1".parse().unwrap();
        assert_eq!(short.to_string(), "0000:01:00.1");
        let wide: PciAddress = "10000:00:00.0".parse().unwrap();
        assert_eq!(wide.domain, 0x10000);
    }

    #[test]
    fn refuses_out_of_range_and_hostile_text() {
        for bad in [
            "",
            "0000:01:20.0",
            "0000:01:00.8",
            "0000:100:00.0",
            "../../etc",
            "0000:01:00.0\0",
            "0000:01:00",
            "0000:01:00.0/../x",
            "+000:01:00.0",
            "0000:01:00.0 ",
            "é0:00.0",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad:?} parsed");
        }
        let huge = "0".repeat(100_000);
        let err = huge.parse::<PciAddress>().unwrap_err().to_string();
        assert!(
            err.len() < 200,
            "error echoes the whole input: {}",
            err.len()
        );
    }

    #[test]
    fn group_ids_are_plain_numbers() {
        assert_eq!("14".parse::<GroupId>().unwrap(), GroupId(14));
        for bad in ["-1", "1.0", "", "99999999999", "1 ", "0x1"] {
            assert!(bad.parse::<GroupId>().is_err(), "{bad:?} parsed");
        }
        assert_eq!("3".parse::<Target>().unwrap(), Target::Group(GroupId(3)));
        assert!(matches!(
            "0000:00:01.0".parse::<Target>().unwrap(),
            Target::Device(_)
        ));
    }
}
