//! `passagectl guests [add|remove]`: the guests Passage knows (local profiles, libvirt's
//! domains, the demo's), and the local profiles kept in the user's config directory.

use crate::common::{json, open_source, print};
use crate::Failure;
use passage_core::cli::ctl::{Cli, GuestsAction};
use passage_core::i18n::{tr, trf};
use passage_core::session::KnownGuests;
use passage_core::{plan, report, scan, store};
use std::path::Path;

pub fn run(cli: &Cli, action: Option<&GuestsAction>, as_json: bool) -> Result<u8, Failure> {
    if let Some(r) = cli.remote()? {
        return Err(Failure(passage_core::i18n::trf(
            "guest profiles are this machine's files, so guests cannot be used with -H {host}",
            &[("host", &r.to_string())],
        )));
    }
    let path = store::profiles_path()
        .ok_or_else(|| Failure(tr("no home directory to keep guest profiles in")))?;
    match action {
        None => list(cli, &path, as_json),
        Some(GuestsAction::Add {
            name,
            vmm,
            machine,
            memory,
        }) => {
            let memory_mib = memory.as_deref().map(store::parse_memory).transpose()?;
            let mut profiles = store::load_profiles(&path)?;
            plan::check_guest_name(name)?;
            store::check_machine(machine)?;
            if profiles.iter().any(|p| &p.name == name) {
                return Err(Failure(trf(
                    "there already is a guest profile named “{name}”",
                    &[("name", name)],
                )));
            }
            profiles.push(store::Profile {
                name: name.clone(),
                vmm: vmm.parse()?,
                machine: machine.clone(),
                memory_mib,
            });
            store::save_profiles(&path, &profiles)?;
            print(&trf("Added guest {name}.\n", &[("name", name)]))?;
            Ok(0)
        }
        Some(GuestsAction::Remove { name }) => {
            let mut profiles = store::load_profiles(&path)?;
            let before = profiles.len();
            profiles.retain(|p| &p.name != name);
            if profiles.len() == before {
                return Err(Failure(trf(
                    "there is no guest profile named “{name}”",
                    &[("name", &name.chars().take(40).collect::<String>())],
                )));
            }
            store::save_profiles(&path, &profiles)?;
            print(&trf("Removed guest {name}.\n", &[("name", name)]))?;
            Ok(0)
        }
    }
}

/// Every known guest: the local profiles, then the demo's guests or libvirt's domains.
fn list(cli: &Cli, profiles: &Path, as_json: bool) -> Result<u8, Failure> {
    let mut known = KnownGuests::gather_from(
        Some(profiles),
        cli.demo == Some(passage_core::demo::DemoHost::Workstation),
    );
    // A profile file we cannot read is the person's to fix, not to be listed around.
    if let Some(e) = known.profiles_error.take() {
        return Err(e.into());
    }
    if cli.demo.is_none() {
        match passage_dbus::libvirt::system_domains() {
            Ok(domains) => {
                // The host is read only when there are domains whose groups to look up.
                let src = open_source(cli)?;
                let host = scan::scan(src.root())?;
                known.add_libvirt(Ok(domains.into_iter().map(|d| d.to_known(&host)).collect()));
            }
            Err(why) => known.add_libvirt(Err(why)),
        }
    }
    if let Some(why) = &known.libvirt_error {
        eprintln!("passagectl: {} {why}", tr("note:"));
    }
    print(&if as_json {
        json(&known.guests)?
    } else {
        report::guests_text(&known.guests)
    })?;
    Ok(0)
}
