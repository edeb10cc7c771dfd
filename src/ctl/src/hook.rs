//! `passagectl hook-qemu DOMAIN OP SUBOP` (hidden): libvirt's qemu hook, installed as
//! /etc/libvirt/hooks/qemu.d/passage. Claims the groups of guests started on demand, gives them
//! back when they stop; the domain XML comes on standard input.

use crate::common::{helper_call, open_source};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::{tr, trf};
use passage_core::{hook, plan, scan, PciAddress};
use std::collections::HashMap;
use std::io::Read;

/// The most domain XML the hook reads from libvirt.
const MAX_DOMAIN_XML: u64 = 16 << 20;

pub fn run(cli: &Cli, domain: &str, op: &str, subop: &str) -> Result<u8, Failure> {
    if cli.demo.is_some() {
        return Err(Failure(tr(
            "the libvirt hook acts on this host; it cannot be used with --demo",
        )));
    }
    // Only the calls we act on need the XML; the others return before reading it.
    if !matches!((op, subop), ("prepare", "begin") | ("release", "end")) {
        return Ok(0);
    }
    let mut xml = String::new();
    std::io::stdin()
        .take(MAX_DOMAIN_XML)
        .read_to_string(&mut xml)?;
    // The topology is read from the root the helper drives (/, or --root in tests); the
    // changes go through the helper like any claim.
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let action = hook::decide(op, subop, &xml, &host)?;
    let no_prompt = || {
        let mut o = HashMap::new();
        // libvirt runs hooks without a terminal: nobody could answer a password prompt.
        o.insert("auth.no_user_interaction", zbus::Variant::Bool(true));
        o
    };
    match action {
        hook::Action::Nothing => Ok(0),
        hook::Action::Claim(groups) => {
            for g in &groups {
                let id = g.0;
                // The group's members as this host's topology has them: the helper refuses if
                // it sees another group under that number.
                let expected: Vec<PciAddress> = plan::claimed_members(&host, *g)
                    .iter()
                    .map(|d| d.address)
                    .collect();
                let mut opts = no_prompt();
                opts.insert("expect_devices", passage_dbus::expect_devices(&expected));
                helper_call(cli, |h| async move { h.claim(id, opts).await }).map_err(
                    |Failure(m)| {
                        Failure(trf(
                            "cannot start {guest}: claiming group {id} failed: {why}",
                            &[("guest", domain), ("id", &g.to_string()), ("why", &m)],
                        ))
                    },
                )?;
            }
            Ok(0)
        }
        hook::Action::Release(groups) => {
            let mut failed = Vec::new();
            for g in &groups {
                let id = g.0;
                if let Err(Failure(m)) =
                    helper_call(cli, |h| async move { h.release(id, no_prompt()).await })
                {
                    failed.push(trf(
                        "group {id}: {why}",
                        &[("id", &g.to_string()), ("why", &m)],
                    ));
                }
            }
            if failed.is_empty() {
                Ok(0)
            } else {
                Err(Failure(trf(
                    "{guest} stopped, but not every group went back to the host: {failures}",
                    &[("guest", domain), ("failures", &failed.join("; "))],
                )))
            }
        }
    }
}
