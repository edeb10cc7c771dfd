//! "Host Readiness": the doctor's findings by topic (`core::doctor`), each with its remedy,
//! and a Fix button where Passage can carry the remedy out (`passagectl fix`, through the
//! helper, which asks for the administrator's password); on a group's reset findings a
//! Rehearse button (`passagectl rehearse-reset`), on an SR-IOV card its count of virtual
//! functions and Set (`passagectl vfs`). What waits for a restart is one of the
//! findings (`boot-line-pending`), so it is said where the rest is. Read afresh after every fix.

use adw::prelude::*;
use passage_core::doctor::{self, Report};
use passage_core::explain::Severity;
use passage_core::i18n::{tr, trf};
use passage_core::{scan, GroupId, PciAddress};
use relm4::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Where the findings are read: this machine (or `--root`), or the demo host (read, never fixed).
#[derive(Debug, Clone)]
pub struct Source {
    pub demo: Option<passage_core::demo::DemoHost>,
    pub root: Option<std::path::PathBuf>,
}

/// The doctor's findings, with what the rows' buttons need of the host: the group of each
/// device a finding names, and each SR-IOV card's virtual functions (now, at most).
#[derive(Debug)]
pub struct Reading {
    report: Report,
    groups: BTreeMap<PciAddress, GroupId>,
    vfs: BTreeMap<PciAddress, (u32, u16)>,
    /// Each device's resizable BARs, in the order the doctor's findings name them.
    bars: BTreeMap<PciAddress, Vec<doctor::ResizableBar>>,
}

impl Source {
    fn read(&self) -> Result<Box<Reading>, String> {
        let src = passage_core::demo::Source::open(self.demo, self.root.as_deref())
            .map_err(|e| e.to_string())?;
        let host = scan::scan(src.root()).map_err(|e| e.to_string())?;
        let mut facts = doctor::read(src.root(), &host);
        // As `passagectl doctor`: the rehearsals from the helper when the state directory is
        // not ours to read.
        if facts.rehearsals.is_empty() && self.demo.is_none() {
            facts.rehearsals = passage_dbus::rehearsals_blocking();
        }
        let report = doctor::examine(&host, &facts);
        let bars = facts
            .devices
            .iter()
            .filter(|(_, f)| !f.resizable_bars.is_empty())
            .map(|(a, f)| (*a, f.resizable_bars.clone()))
            .collect();
        let named = |a: &PciAddress| report.findings.iter().any(|f| f.reason.device == Some(*a));
        let groups = host
            .devices
            .values()
            .filter(|d| named(&d.address))
            .filter_map(|d| Some((d.address, d.group?)))
            .collect();
        let vfs = host
            .devices
            .values()
            .filter(|d| named(&d.address))
            .filter_map(|d| {
                let total = d.capabilities.sriov_total_vfs.filter(|t| *t > 0)?;
                let now = d.sriov_numvfs.unwrap_or(d.virtfns.len() as u32);
                Some((d.address, (now, total)))
            })
            .collect();
        Ok(Box::new(Reading {
            report,
            groups,
            vfs,
            bars,
        }))
    }

    /// Fixes go to this machine's helper; the demo host has none, and neither has a recorded
    /// tree unless a test's helper drives it on the bus it gives.
    fn can_fix(&self) -> bool {
        self.demo.is_none()
    }
}

pub struct ReadinessInit {
    pub parent: gtk::Window,
    pub source: Source,
    pub registry: crate::registry::Registry,
}

pub struct ReadinessDialog {
    source: Source,
    registry: crate::registry::Registry,
    /// What the last fix said (or why it failed), above the findings.
    said: String,
    busy: bool,
}

#[derive(Debug)]
pub enum ReadinessInput {
    Fix(String, Option<PciAddress>),
    /// Rehearse a group's reset (claimed, each member reset, given back) through the helper.
    Rehearse(GroupId),
    /// Give an SR-IOV card this many virtual functions, now and at every boot.
    SetVfs(PciAddress, u32),
    /// The size (MiB) a resizable BAR gets whenever Passage claims the device.
    SetBar(PciAddress, u8, u64),
}

#[derive(Debug)]
pub enum ReadinessCmd {
    Read(Result<Box<Reading>, String>),
    Fixed(Result<Vec<String>, String>),
}

pub struct ReadinessWidgets {
    list: gtk::Box,
    said: gtk::Label,
}

impl Component for ReadinessDialog {
    type Init = ReadinessInit;
    type Input = ReadinessInput;
    type Output = ();
    type CommandOutput = ReadinessCmd;
    type Root = adw::Window;
    type Widgets = ReadinessWidgets;

    fn init_root() -> Self::Root {
        adw::Window::builder()
            .title(tr("Host Readiness"))
            .modal(true)
            .default_width(720)
            .default_height(600)
            .build()
    }

    fn init(
        init: Self::Init,
        root: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        root.set_transient_for(Some(&init.parent));
        let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
        let header = adw::HeaderBar::new();
        header.set_title_widget(Some(&adw::WindowTitle::new(
            &tr("Host Readiness"),
            &tr("What stands between this host and pass-through"),
        )));
        content.append(&header);
        let said = gtk::Label::builder()
            // Read out as it changes: what a fix did is announced where screen readers look.
            .accessible_role(gtk::AccessibleRole::Status)
            .wrap(true)
            .xalign(0.0)
            .margin_start(18)
            .margin_end(18)
            .margin_top(12)
            .selectable(true)
            .build();
        content.append(&said);
        let list = gtk::Box::new(gtk::Orientation::Vertical, 18);
        list.set_margin_top(12);
        list.set_margin_bottom(18);
        list.set_margin_start(12);
        list.set_margin_end(12);
        let clamp = adw::Clamp::builder().maximum_size(820).child(&list).build();
        let scrolled = gtk::ScrolledWindow::builder()
            .vexpand(true)
            .child(&clamp)
            .build();
        content.append(&scrolled);
        root.set_content(Some(&content));
        let close = gtk::ShortcutController::new();
        close.add_shortcut(gtk::Shortcut::new(
            gtk::ShortcutTrigger::parse_string("Escape"),
            Some(gtk::NamedAction::new("window.close")),
        ));
        root.add_controller(close);

        let model = ReadinessDialog {
            source: init.source,
            registry: init.registry,
            said: tr("Reading this host…"),
            busy: true,
        };
        let src = model.source.clone();
        sender.spawn_oneshot_command(move || ReadinessCmd::Read(src.read()));
        said.set_label(&model.said);
        ComponentParts {
            model,
            widgets: ReadinessWidgets { list, said },
        }
    }

    fn update_with_view(
        &mut self,
        widgets: &mut Self::Widgets,
        msg: Self::Input,
        sender: ComponentSender<Self>,
        _root: &Self::Root,
    ) {
        match msg {
            ReadinessInput::Fix(code, device) => {
                if self.busy {
                    return;
                }
                self.busy = true;
                self.said = trf(
                    "Fixing {code}: the helper asks for the administrator's password…",
                    &[("code", &code)],
                );
                self.show_said(widgets);
                set_fix_buttons(&widgets.list, false);
                sender.spawn_oneshot_command(move || ReadinessCmd::Fixed(fix(&code, device)));
            }
            ReadinessInput::Rehearse(g) => {
                if self.busy {
                    return;
                }
                self.busy = true;
                self.said = trf(
                    "Rehearsing the reset of group {group}: the helper asks for the administrator's password, claims the group, resets each device and gives it back…",
                    &[("group", &g.to_string())],
                );
                self.show_said(widgets);
                set_fix_buttons(&widgets.list, false);
                sender.spawn_oneshot_command(move || ReadinessCmd::Fixed(rehearse(g)));
            }
            ReadinessInput::SetBar(a, bar, mib) => {
                if self.busy {
                    return;
                }
                self.busy = true;
                self.said = trf(
                    "BAR {bar} of {device} for claims: the helper asks for the administrator's password…",
                    &[("device", &a.to_string()), ("bar", &bar.to_string())],
                );
                self.show_said(widgets);
                set_fix_buttons(&widgets.list, false);
                sender.spawn_oneshot_command(move || ReadinessCmd::Fixed(set_bar(a, bar, mib)));
            }
            ReadinessInput::SetVfs(a, n) => {
                if self.busy {
                    return;
                }
                self.busy = true;
                self.said = trf(
                    "Giving {device} {count} virtual functions: the helper asks for the administrator's password…",
                    &[("device", &a.to_string()), ("count", &n.to_string())],
                );
                self.show_said(widgets);
                set_fix_buttons(&widgets.list, false);
                sender.spawn_oneshot_command(move || ReadinessCmd::Fixed(set_vfs(a, n)));
            }
        }
    }

    fn update_cmd_with_view(
        &mut self,
        widgets: &mut Self::Widgets,
        msg: Self::CommandOutput,
        sender: ComponentSender<Self>,
        _root: &Self::Root,
    ) {
        match msg {
            ReadinessCmd::Read(Ok(reading)) => {
                self.busy = false;
                if self.said == tr("Reading this host…") {
                    self.said = summary(&reading.report);
                }
                self.fill(widgets, &reading, &sender);
                self.show_said(widgets);
            }
            ReadinessCmd::Read(Err(e)) => {
                self.busy = false;
                self.said = trf(
                    "Passage could not read this host: {error}",
                    &[("error", &e)],
                );
                self.show_said(widgets);
            }
            ReadinessCmd::Fixed(r) => {
                self.said = match r {
                    Ok(notes) => notes.join("\n"),
                    Err(e) => e,
                };
                self.show_said(widgets);
                // Read again: the finding is gone, or waits for a restart now.
                let src = self.source.clone();
                sender.spawn_oneshot_command(move || ReadinessCmd::Read(src.read()));
            }
        }
    }
}

impl ReadinessDialog {
    fn show_said(&self, widgets: &ReadinessWidgets) {
        widgets.said.set_label(&self.said);
        self.registry
            .texts
            .borrow_mut()
            .insert("readiness".into(), self.said.clone());
    }

    /// One group of rows per topic, in the doctor's order.
    fn fill(&self, widgets: &ReadinessWidgets, reading: &Reading, sender: &ComponentSender<Self>) {
        let report = &reading.report;
        while let Some(c) = widgets.list.first_child() {
            widgets.list.remove(&c);
        }
        let mut first_fix: Option<gtk::Button> = None;
        // One Rehearse button per group, on its first reset finding.
        let mut rehearsable: BTreeSet<GroupId> = BTreeSet::new();
        // Which of a device's resizable BARs the next resizable-bar finding is about.
        let mut bar_seen: BTreeMap<PciAddress, usize> = BTreeMap::new();
        let mut group: Option<(String, adw::PreferencesGroup)> = None;
        let mut codes = Vec::new();
        for f in &report.findings {
            if group.as_ref().map(|(t, _)| t.as_str()) != Some(f.topic) {
                let g = adw::PreferencesGroup::new();
                g.set_title(&topic_name(f.topic));
                widgets.list.append(&g);
                group = Some((f.topic.to_string(), g));
            }
            let Some((_, g)) = &group else { continue };
            let row = adw::ActionRow::new();
            row.set_title(&glib_escape(&f.reason.message));
            row.set_title_lines(0);
            if let Some(r) = &f.reason.remedy {
                row.set_subtitle(&glib_escape(r));
                row.set_subtitle_lines(0);
            }
            let (icon, what) = match f.reason.severity {
                Severity::Blocker => ("dialog-error-symbolic", tr("Blocker")),
                Severity::Warning => ("dialog-warning-symbolic", tr("Warning")),
                Severity::Info => ("dialog-information-symbolic", tr("Note")),
            };
            let img = gtk::Image::from_icon_name(icon);
            crate::a11y::accessible_label(&img, &what);
            row.add_prefix(&img);
            codes.push(f.reason.code.clone());
            if f.fix.is_some() && self.source.can_fix() {
                let b = gtk::Button::with_label(&tr("Fix"));
                b.set_valign(gtk::Align::Center);
                b.add_css_class("suggested-action");
                b.set_tooltip_text(f.fix.as_deref());
                crate::a11y::accessible_label(
                    &b,
                    &trf("Fix: {what}", &[("what", &f.reason.message)]),
                );
                let (code, device) = (f.reason.code.clone(), f.reason.device);
                let s = sender.input_sender().clone();
                b.connect_clicked(move |_| s.emit(ReadinessInput::Fix(code.clone(), device)));
                crate::registry::enter(
                    &self.registry.buttons,
                    format!("fix-{}", f.reason.code),
                    &b,
                );
                row.add_suffix(&b);
                first_fix.get_or_insert(b);
            }
            // What a guest's reboot will do, tried now (the CLI's rehearse-reset).
            let group = f
                .reason
                .device
                .and_then(|a| reading.groups.get(&a).copied());
            if let Some(gid) = group
                .filter(|g| f.topic == "reset" && self.source.can_fix() && rehearsable.insert(*g))
            {
                let b = gtk::Button::with_label(&tr("Rehearse"));
                b.set_valign(gtk::Align::Center);
                b.set_tooltip_text(Some(&tr("Claim the group as a guest's start would, reset each device the way the kernel does for VFIO, check that it answers, and give it back.")));
                crate::a11y::accessible_label(
                    &b,
                    &trf(
                        "Rehearse the reset of group {group}",
                        &[("group", &gid.to_string())],
                    ),
                );
                let s = sender.input_sender().clone();
                b.connect_clicked(move |_| s.emit(ReadinessInput::Rehearse(gid)));
                crate::registry::enter(&self.registry.buttons, format!("rehearse-{gid}"), &b);
                row.add_suffix(&b);
            }
            // An SR-IOV card: how many virtual functions, set through the helper.
            if let (Some(a), true) = (
                f.reason.device,
                f.reason.code == "sriov-capable" && self.source.can_fix(),
            ) {
                if let Some((now, total)) = reading.vfs.get(&a).copied() {
                    let spin = gtk::SpinButton::with_range(0.0, f64::from(total), 1.0);
                    spin.set_value(f64::from(now));
                    spin.set_valign(gtk::Align::Center);
                    crate::a11y::accessible_label(
                        &spin,
                        &trf(
                            "Virtual functions of {device}",
                            &[("device", &a.to_string())],
                        ),
                    );
                    let b = gtk::Button::with_label(&tr("Set"));
                    b.set_valign(gtk::Align::Center);
                    crate::a11y::accessible_label(
                        &b,
                        &trf(
                            "Set the virtual functions of {device}",
                            &[("device", &a.to_string())],
                        ),
                    );
                    let s = sender.input_sender().clone();
                    let count = spin.clone();
                    b.connect_clicked(move |_| {
                        s.emit(ReadinessInput::SetVfs(
                            a,
                            count.value_as_int().max(0) as u32,
                        ))
                    });
                    crate::registry::enter(&self.registry.buttons, format!("vfs-{a}"), &b);
                    row.add_suffix(&spin);
                    row.add_suffix(&b);
                }
            }
            // A resizable BAR: the size claims give it, chosen among those the card offers
            // (256 MiB first where offered: the size cards had before resizable BARs).
            if let (Some(a), true) = (
                f.reason.device,
                f.reason.code == "resizable-bar" && self.source.can_fix(),
            ) {
                let i = bar_seen.entry(a).or_insert(0);
                if let Some(rb) = reading.bars.get(&a).and_then(|v| v.get(*i)) {
                    let mut sizes = rb.sizes_mib.clone();
                    sizes.sort_unstable();
                    let labels: Vec<String> = sizes.iter().map(|m| doctor::size_text(*m)).collect();
                    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                    let dd = gtk::DropDown::from_strings(&refs);
                    let first = sizes.iter().position(|m| *m == 256).unwrap_or(0);
                    dd.set_selected(first as u32);
                    dd.set_valign(gtk::Align::Center);
                    crate::a11y::label_dropdown(
                        &dd,
                        &trf(
                            "Size of BAR {bar} of {device} for claims",
                            &[("bar", &rb.index.to_string()), ("device", &a.to_string())],
                        ),
                    );
                    let b = gtk::Button::with_label(&tr("Set"));
                    b.set_valign(gtk::Align::Center);
                    crate::a11y::accessible_label(
                        &b,
                        &trf(
                            "Set the size of BAR {bar} of {device} for claims",
                            &[("bar", &rb.index.to_string()), ("device", &a.to_string())],
                        ),
                    );
                    let s = sender.input_sender().clone();
                    let (choice, bar) = (dd.clone(), rb.index);
                    b.connect_clicked(move |_| {
                        if let Some(m) = sizes.get(choice.selected() as usize) {
                            s.emit(ReadinessInput::SetBar(a, bar, *m));
                        }
                    });
                    crate::registry::enter(
                        &self.registry.buttons,
                        format!("bar-{a}-{}", rb.index),
                        &b,
                    );
                    row.add_suffix(&dd);
                    row.add_suffix(&b);
                }
                *i += 1;
            }
            g.add(&row);
        }
        self.registry
            .texts
            .borrow_mut()
            .insert("readiness-codes".into(), codes.join(" "));
        // The keyboard starts on the first thing Passage can do.
        if let Some(b) = first_fix {
            b.grab_focus();
        }
    }
}

fn set_fix_buttons(list: &gtk::Box, on: bool) {
    fn walk(w: &gtk::Widget, on: bool) {
        if let Some(b) = w.downcast_ref::<gtk::Button>() {
            let ours = [tr("Fix"), tr("Rehearse"), tr("Set")];
            if b.label()
                .is_some_and(|l| ours.iter().any(|o| o.as_str() == l.as_str()))
            {
                b.set_sensitive(on);
            }
        }
        let mut c = w.first_child();
        while let Some(x) = c {
            walk(&x, on);
            c = x.next_sibling();
        }
    }
    walk(list.upcast_ref(), on);
}

/// Row titles are markup: the doctor's words are text.
fn glib_escape(s: &str) -> String {
    gtk::glib::markup_escape_text(s).to_string()
}

fn topic_name(t: &str) -> String {
    match t {
        "iommu" => tr("IOMMU"),
        "vfio" => tr("VFIO"),
        "reset" => tr("Reset"),
        "boot" => tr("Boot"),
        _ => tr("Devices"),
    }
}

fn summary(r: &Report) -> String {
    let blockers = r
        .findings
        .iter()
        .filter(|f| f.reason.severity == Severity::Blocker)
        .count();
    if blockers == 0 {
        tr("Nothing blocks pass-through on this host.")
    } else {
        trf(
            "Blockers: {n}. Pass-through cannot work on this host until they are solved.",
            &[("n", &blockers.to_string())],
        )
    }
}

/// A rehearsal through the helper, said as `passagectl rehearse-reset` says it.
fn rehearse(g: GroupId) -> Result<Vec<String>, String> {
    let (survives, lines) = passage_dbus::rehearse_blocking(g.0)?;
    let mut said = vec![if survives {
        trf(
            "Group {group} survives a guest's reboot.",
            &[("group", &g.to_string())],
        )
    } else {
        trf(
            "Group {group} may not survive a guest's reboot.",
            &[("group", &g.to_string())],
        )
    }];
    said.extend(lines);
    Ok(said)
}

fn set_bar(a: PciAddress, bar: u8, mib: u64) -> Result<Vec<String>, String> {
    let done = passage_dbus::set_bar_size_blocking(&a.to_string(), bar, mib)?;
    Ok(done.notes)
}

fn set_vfs(a: PciAddress, n: u32) -> Result<Vec<String>, String> {
    let done = passage_dbus::set_vfs_blocking(&a.to_string(), n)?;
    let mut said = vec![if done.changed {
        trf(
            "{device} has {count} virtual functions now.",
            &[("device", &a.to_string()), ("count", &n.to_string())],
        )
    } else {
        trf(
            "Nothing changed for {device}.",
            &[("device", &a.to_string())],
        )
    }];
    said.extend(done.notes);
    Ok(said)
}

/// The helper's Fix, on this machine's system bus.
fn fix(code: &str, device: Option<PciAddress>) -> Result<Vec<String>, String> {
    let dev = device.map(|d| d.to_string()).unwrap_or_default();
    let done = passage_dbus::fix_blocking(code, &dev, false)?;
    let mut notes = vec![if done.changed {
        trf("Fixed {code}.", &[("code", code)])
    } else {
        trf("Nothing changed for {code}.", &[("code", code)])
    }];
    notes.extend(done.notes);
    Ok(notes)
}
