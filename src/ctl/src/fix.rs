//! `passagectl fix CODE [DEVICE]`, `unfix`, `vfs ADDRESS COUNT` (SR-IOV), `rehearse-reset GROUP`: a doctor's remedy carried out through the helper
//! (`core::bootline` computes the edit; the helper writes it). `--dry-run` shows the change to
//! each file and the commands that would run, reading the host here (also a recording).

use crate::common::{helper_call, open_source, print, refuse_fake};
use crate::Failure;
use passage_core::bootline::{self, Boot};
use passage_core::cli::ctl::Cli;
use passage_core::i18n::{tr, trf};
use passage_core::{doctor, scan, PciAddress};
use std::collections::HashMap;

fn device_of(device: Option<&str>) -> Result<Option<PciAddress>, Failure> {
    Ok(match device {
        Some(d) => Some(d.parse()?),
        None => None,
    })
}

pub fn fix(cli: &Cli, code: &str, device: Option<&str>, dry_run: bool) -> Result<u8, Failure> {
    if dry_run {
        return dry(cli, code, device_of(device)?);
    }
    through_helper(cli, code, device, false)
}

pub fn unfix(cli: &Cli, code: &str, device: Option<&str>) -> Result<u8, Failure> {
    through_helper(cli, code, device, true)
}

/// The helper's Fix or Unfix, and what it said.
fn through_helper(cli: &Cli, code: &str, device: Option<&str>, undo: bool) -> Result<u8, Failure> {
    let addr = device_of(device)?;
    refuse_fake(
        cli,
        if undo {
            "unfix"
        } else {
            "fix (without --dry-run)"
        },
    )?;
    let (code_s, dev_s) = (
        code.to_string(),
        addr.map(|a| a.to_string()).unwrap_or_default(),
    );
    let done = helper_call(cli, |h| async move {
        if undo {
            h.unfix(&code_s, &dev_s, HashMap::new()).await
        } else {
            h.fix(&code_s, &dev_s, HashMap::new()).await
        }
    })?;
    print(&match (done.changed, undo) {
        (true, false) => trf("Fixed {code}:\n", &[("code", code)]),
        (true, true) => trf("Took back the fix of {code}:\n", &[("code", code)]),
        (false, _) => trf("Nothing changed for {code}:\n", &[("code", code)]),
    })?;
    for n in &done.notes {
        print(&format!("  {n}\n"))?;
    }
    Ok(0)
}

/// `passagectl rehearse-reset GROUP`: exit 1 when a member does not survive it.
pub fn rehearse(cli: &Cli, group: &str) -> Result<u8, Failure> {
    let g: passage_core::GroupId = group.parse()?;
    refuse_fake(cli, "rehearse-reset")?;
    let (survives, notes) = helper_call(cli, |h| async move {
        h.rehearse_reset(g.0, HashMap::new()).await
    })?;
    for n in &notes {
        print(&format!("{n}\n"))?;
    }
    Ok(u8::from(!survives))
}

/// `passagectl vfs ADDRESS COUNT`.
pub fn vfs(cli: &Cli, device: &str, count: u32) -> Result<u8, Failure> {
    let addr: PciAddress = device.parse()?;
    refuse_fake(cli, "vfs")?;
    let a = addr.to_string();
    let done = helper_call(cli, |h| async move {
        h.set_virtual_functions(&a, count, HashMap::new()).await
    })?;
    for n in &done.notes {
        print(&format!("{n}\n"))?;
    }
    Ok(0)
}

/// `passagectl bar-size ADDRESS BAR SIZE`.
pub fn bar_size(cli: &Cli, device: &str, bar: u8, size: &str) -> Result<u8, Failure> {
    let addr: PciAddress = device.parse()?;
    let mib = parse_size(size).ok_or_else(|| {
        Failure(trf(
            "“{size}” is not a BAR size: give MiB (256), GiB (8GiB) or none",
            &[("size", &size.chars().take(24).collect::<String>())],
        ))
    })?;
    refuse_fake(cli, "bar-size")?;
    let a = addr.to_string();
    let done = helper_call(cli, |h| async move {
        h.set_bar_size(&a, u32::from(bar), mib, HashMap::new())
            .await
    })?;
    for n in &done.notes {
        print(&format!("{n}\n"))?;
    }
    Ok(0)
}

/// "256", "256M", "256MiB", "8G", "8GiB" → MiB; "none" or "0" → 0.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Some(0);
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mib" => 1,
        "g" | "gib" => 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The change as `diff` would show the lines that differ, file by file, and the commands.
fn dry(cli: &Cli, code: &str, device: Option<PciAddress>) -> Result<u8, Failure> {
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let facts = doctor::read(src.root(), &host);
    let fix = doctor::fix_for(&host, &facts, code, device).map_err(|why| {
        Failure(trf(
            "nothing to fix for {code}: {why}",
            &[("code", code), ("why", &why)],
        ))
    })?;
    let edit = match fix {
        doctor::Fix::BootLine { edit } => edit,
        doctor::Fix::D3cold { address } => {
            let attr = host
                .devices
                .get(&address)
                .map(|d| format!("/{}/d3cold_allowed", d.sysfs_path))
                .unwrap_or_default();
            print(&trf(
                "{code}: {address} would be kept powered: 0 written to {file} now, and a udev rule (/{rule}) keeps it so at every boot while the device at that address has the same ids.\n",
                &[
                    ("code", code),
                    ("address", &address.to_string()),
                    ("file", &attr),
                    ("rule", "etc/udev/rules.d/62-passage-power.rules"),
                ],
            ))?;
            return Ok(0);
        }
    };
    let Some(Boot::Known(cfg)) = &facts.boot else {
        return Err(Failure(tr("the boot configuration could not be read")));
    };
    let changes = cfg.edit_files(src.root(), &edit).map_err(Failure)?;
    let mut out = trf(
        "{code}: the kernel command line {how}; this system boots with {arrangement}.\n",
        &[
            ("code", code),
            ("how", &describe(&edit)),
            ("arrangement", cfg.arrangement.describe()),
        ],
    );
    if changes.is_empty() {
        out.push_str(&tr(
            "The boot configuration already says so; nothing would be written.\n",
        ));
    }
    for (file, before, after) in &changes {
        out.push_str(&format!("--- /{0}\n+++ /{0}\n", file.display()));
        let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
        for i in 0..b.len().max(a.len()) {
            match (b.get(i), a.get(i)) {
                (Some(x), Some(y)) if x == y => {}
                (x, y) => {
                    if let Some(x) = x {
                        out.push_str(&format!("-{x}\n"));
                    }
                    if let Some(y) = y {
                        out.push_str(&format!("+{y}\n"));
                    }
                }
            }
        }
    }
    for c in cfg.commands(&edit) {
        out.push_str(&trf("then: {command}\n", &[("command", &c.join(" "))]));
    }
    out.push_str(&trf(
        "Next boot's line: {line}\n",
        &[("line", &edit.apply(&cfg.line).join(" "))],
    ));
    print(&out)?;
    Ok(0)
}

fn describe(e: &bootline::Edit) -> String {
    let mut parts = Vec::new();
    if !e.add.is_empty() {
        parts.push(trf("gains {words}", &[("words", &e.add.join(" "))]));
    }
    if !e.remove.is_empty() {
        parts.push(trf("loses {words}", &[("words", &e.remove.join(" "))]));
    }
    parts.join(&tr(" and "))
}
