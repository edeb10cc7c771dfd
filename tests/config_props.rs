//! Property tests (the fuzz target for config-space parsing): any bytes at all parse or fail
//! cleanly, and whatever the writer encodes the parser reads back.

use passage_core::config::{ConfigSpace, ConfigSpec, PortType};
use proptest::prelude::*;

fn port_type() -> impl Strategy<Value = Option<PortType>> {
    prop_oneof![
        Just(None),
        Just(Some(PortType::Endpoint)),
        Just(Some(PortType::RootPort)),
        Just(Some(PortType::DownstreamPort)),
        Just(Some(PortType::UpstreamPort)),
        Just(Some(PortType::PcieToPciBridge)),
        Just(Some(PortType::RootComplexEndpoint)),
    ]
}

prop_compose! {
    fn spec()(full in any::<bool>(), port_type in port_type(), pm in any::<bool>(),
              pm_no_soft_reset in any::<bool>(), msi in any::<bool>(), msix in any::<bool>(),
              flr in any::<bool>(), aer in any::<bool>(), acs in proptest::option::of(0u16..0x80),
              sriov_total_vfs in 0u16..256, intx_pin in 0u8..5,
              serial_number in proptest::option::of(any::<u64>())) -> ConfigSpec {
        ConfigSpec { full, port_type, pm, pm_no_soft_reset, msi, msix, flr, aer, acs, sriov_total_vfs, intx_pin, serial_number }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..4200)) {
        match ConfigSpace::parse(&bytes) {
            Ok(c) => {
                prop_assert!(bytes.len() >= 64);
                prop_assert_eq!(c.readable, bytes.len());
            }
            Err(_) => prop_assert!(bytes.len() < 64 || bytes[0..2] == [0xff, 0xff]),
        }
    }

    #[test]
    fn capability_lists_with_hostile_pointers_terminate(mut bytes in proptest::collection::vec(any::<u8>(), 256..4097), ptr in 0u8..=255) {
        bytes[0] = 0x86; bytes[1] = 0x80;
        bytes[6] |= 0x10;
        bytes[0x34] = ptr;
        let _ = ConfigSpace::parse(&bytes);
    }

    #[test]
    fn what_the_writer_encodes_the_parser_reads(s in spec(), vendor in 0u16..0xffff, device in any::<u16>(),
                                                bridge in any::<bool>(), mf in any::<bool>()) {
        let class = if bridge { 0x060400 } else { 0x020000 };
        let bytes = s.build(vendor, device, class, 1, (0x1234, 0x5678), bridge, mf, (2, 3));
        let c = ConfigSpace::parse(&bytes).unwrap();
        prop_assert_eq!(c.vendor_id, vendor);
        prop_assert_eq!(c.device_id, device);
        prop_assert_eq!(c.class, class);
        prop_assert_eq!(c.multifunction, mf);
        prop_assert_eq!(c.caps.intx_pin, s.intx_pin);
        if bridge { prop_assert_eq!(c.bus_range, Some((2, 3))); } else { prop_assert_eq!(c.subsystem, Some((0x1234, 0x5678))); }
        if !s.full {
            // The unprivileged view: nothing behind the capability pointer is claimed known.
            prop_assert_eq!(c.caps.express, None);
            prop_assert_eq!(c.caps.acs, None);
            return Ok(());
        }
        prop_assert_eq!(c.caps.pm, Some(s.pm));
        prop_assert_eq!(c.caps.msi, Some(s.msi));
        prop_assert_eq!(c.caps.msix, Some(s.msix));
        prop_assert_eq!(c.caps.express, Some(s.port_type.is_some()));
        prop_assert_eq!(c.caps.port_type, s.port_type);
        prop_assert_eq!(c.caps.flr, Some(s.flr));
        if s.pm { prop_assert_eq!(c.caps.pm_reset, Some(!s.pm_no_soft_reset)); }
        if s.port_type.is_some() {
            prop_assert_eq!(c.caps.aer, Some(s.aer));
            prop_assert_eq!(c.caps.acs.map(|a| a.map(|x| x.control)), Some(s.acs));
            prop_assert_eq!(c.caps.sriov_total_vfs, Some(s.sriov_total_vfs));
            prop_assert_eq!(c.caps.serial_number.map(|n| n.0), s.serial_number);
        } else {
            prop_assert_eq!(c.caps.aer, Some(false));
            prop_assert_eq!(c.caps.acs, Some(None));
        }
    }
}
