//! What stands between the person and a working Apply, in words: the notices above the host
//! list and the status pages that take the place of an empty list, an empty guest pane or an
//! Apply that cannot start.
//!
//! The raw error a bus or a file gave (`failed to connect to unix:path=…: No such file or
//! directory (os error 2)`) is never the message: each notice says what is missing and what to
//! do, and keeps the raw text behind a "Details" expander for a bug report.

use crate::registry::Registry;
use adw::prelude::*;
use passage_core::explain;
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use passage_dbus::Unreachable;

/// One thing the person should know, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What is wrong, in a line.
    pub title: String,
    /// What it means and what to do.
    pub body: String,
    /// The error as the system gave it (for a bug report), when there is one.
    pub details: Option<String>,
    /// A button that does what the notice says can be done: its label and its window action.
    pub action: Option<(String, &'static str)>,
}

/// What the last reading of the host could not do, as it came back.
#[derive(Debug, Clone, Default)]
pub struct Troubles {
    /// Why Apply cannot reach the helper.
    pub helper: Option<Unreachable>,
    /// Why libvirt's guests could not be listed (the bus's words).
    pub libvirt: Option<String>,
    /// Why the plan could not be read (already a sentence of ours).
    pub plan: Option<String>,
    /// Why the local guest profiles could not be read.
    pub profiles: Option<String>,
    /// Why the last save of the plan failed (until one succeeds).
    pub save: Option<String>,
    /// What the sandbox hides (a sentence of ours).
    pub sandbox: Option<String>,
}

impl Troubles {
    /// Whether there is no system bus at all (helper and libvirt both out of reach).
    pub fn no_bus(&self) -> bool {
        matches!(self.helper, Some(Unreachable::NoSystemBus(_)))
    }
}

/// The helper out of reach, in words.
pub fn helper_notice(u: &Unreachable) -> Notice {
    match u {
        Unreachable::NoSystemBus(e) => Notice {
            title: tr("No system bus"),
            body: tr("This session has no D-Bus system bus (a container or a minimal virtual machine?), so Apply cannot reach the Passage helper to claim groups and libvirt's guests cannot be listed. Plans and exports work without it; on a full system, start D-Bus with “systemctl start dbus”."),
            details: Some(e.clone()),
            action: None,
        },
        Unreachable::NotInstalled => Notice {
            title: tr("The Passage helper is not installed"),
            body: tr("Apply needs it to claim groups; plans and exports work without it. Install it with “make install”, or your distribution's passage package."),
            details: None,
            action: None,
        },
        Unreachable::Failed(e) => Notice {
            title: tr("The system bus did not answer about the Passage helper"),
            body: tr("Apply may not be able to claim groups. If it fails, the details below help a bug report."),
            details: Some(e.clone()),
            action: None,
        },
    }
}

/// Every notice for the banner: the IOMMU's reasons when it is off (each with its remedy;
/// not when the host has no group at all, where the page in place of the list says them),
/// then what could not be read. libvirt's failure is left out when there is no bus at all (the
/// bus notice says it).
pub fn notices(host: &Host, t: &Troubles, drift: &[passage_core::plan::Drift]) -> Vec<Notice> {
    let mut v = Vec::new();
    if !drift.is_empty() {
        let can = drift
            .iter()
            .any(|d| matches!(d, passage_core::plan::Drift::Moved(_)));
        v.push(Notice {
            title: tr("Planned cards are not where the plan has them"),
            body: drift
                .iter()
                .map(passage_core::plan::Drift::describe)
                .collect::<Vec<_>>()
                .join(" "),
            details: None,
            action: can.then(|| (tr("Follow the Cards"), "win.remap")),
        });
    }
    if !host.groups.is_empty() {
        v.extend(iommu_notices(&explain::iommu(host)));
    }
    if let Some(h) = &t.helper {
        v.push(helper_notice(h));
    }
    if let Some(e) = t.libvirt.as_ref().filter(|_| !t.no_bus()) {
        v.push(Notice {
            title: tr("libvirt's guests could not be listed"),
            body: tr("Groups can still be planned for Passage's own guest profiles. For libvirt's guests, start libvirtd and libvirt-dbus (“systemctl start libvirtd libvirt-dbus”)."),
            details: Some(e.clone()),
            action: None,
        });
    }
    if let Some(p) = &t.plan {
        v.push(Notice {
            title: tr("The plan could not be read"),
            body: tr("An empty plan is open instead. Before your first change is saved over it, the file is kept beside it with “.unreadable” added to its name."),
            details: Some(p.clone()),
            action: None,
        });
    }
    if let Some(p) = &t.profiles {
        v.push(Notice {
            title: tr("Your guest profiles could not be read"),
            body: tr("Their guests are missing until the file is mended (“passagectl guests” says what is wrong with it)."),
            details: Some(p.clone()),
            action: None,
        });
    }
    if let Some(e) = &t.save {
        v.push(Notice {
            title: tr("The plan could not be saved"),
            body: tr("Your changes are kept in this window, not on disk. Check that the plan's folder can be written; the next change tries again."),
            details: Some(e.clone()),
            action: None,
        });
    }
    if let Some(s) = &t.sandbox {
        v.push(Notice {
            title: tr("Passage runs in a sandbox"),
            body: s.clone(),
            details: None,
            action: None,
        });
    }
    v
}

/// Why the IOMMU is off, each reason with its remedy (none when it is on).
fn iommu_notices(iommu: &explain::IommuVerdict) -> Vec<Notice> {
    if iommu.enabled {
        return Vec::new();
    }
    iommu
        .reasons
        .iter()
        .map(|r| Notice {
            title: r.message.clone(),
            body: r.remedy.clone().unwrap_or_default(),
            details: None,
            action: None,
        })
        .collect()
}

/// The notices' words as one text (titles and bodies, no details), a line each (the probe
/// reports the banner so) or a paragraph each (a status page's description).
pub fn words(notices: &[Notice], between: &str) -> String {
    notices
        .iter()
        .map(|n| {
            if n.body.is_empty() {
                n.title.clone()
            } else {
                format!("{} {}", n.title, n.body)
            }
        })
        .collect::<Vec<_>>()
        .join(between)
}

/// The notices above the window's content (above a status page too, so a page in place of
/// the list never hides why).
pub struct NoticeBar {
    bar: gtk::Box,
    shown: Vec<Notice>,
    registry: Registry,
}

impl NoticeBar {
    /// An empty bar (hidden until there is something to say).
    pub fn new(registry: &Registry) -> Self {
        let bar = gtk::Box::new(gtk::Orientation::Vertical, 8);
        bar.add_css_class("banner");
        bar.set_visible(false);
        crate::registry::enter(&registry.panes, "banner".into(), bar.upcast_ref());
        Self {
            bar,
            shown: Vec::new(),
            registry: registry.clone(),
        }
    }

    /// The widget to place in the window.
    pub fn widget(&self) -> &gtk::Box {
        &self.bar
    }

    /// Shows these notices (redrawn only when they changed).
    pub fn set(&mut self, n: Vec<Notice>) {
        if n == self.shown {
            return;
        }
        while let Some(c) = self.bar.first_child() {
            self.bar.remove(&c);
        }
        for notice in &n {
            self.bar
                .append(&notice_widget(notice, Some(&self.registry)));
        }
        self.bar.set_visible(!n.is_empty());
        self.registry
            .texts
            .borrow_mut()
            .insert("banner".into(), words(&n, "\n"));
        self.shown = n;
    }
}

/// A notice drawn: its title in bold, what to do, the raw error behind "Details".
pub fn notice_widget(n: &Notice, registry: Option<&Registry>) -> gtk::Box {
    let b = gtk::Box::new(gtk::Orientation::Vertical, 2);
    let title = gtk::Label::new(Some(&n.title));
    title.add_css_class("heading");
    title.set_xalign(0.0);
    title.set_wrap(true);
    b.append(&title);
    if !n.body.is_empty() {
        let body = gtk::Label::new(Some(&n.body));
        body.set_xalign(0.0);
        body.set_wrap(true);
        body.set_selectable(true);
        b.append(&body);
    }
    if let Some(d) = &n.details {
        b.append(&details(d));
    }
    if let Some((label, action)) = &n.action {
        let button = gtk::Button::with_label(label);
        button.set_action_name(Some(action));
        button.set_halign(gtk::Align::Start);
        if let Some(r) = registry {
            let key = action.trim_start_matches("win.").to_string();
            crate::registry::enter(&r.buttons, key, &button);
        }
        b.append(&button);
    }
    b
}

/// "Details": the system's own words, selectable, folded until asked for.
pub fn details(text: &str) -> gtk::Expander {
    let e = gtk::Expander::new(Some(&tr("Details")));
    let l = gtk::Label::new(Some(text));
    l.set_xalign(0.0);
    l.set_wrap(true);
    l.set_selectable(true);
    l.add_css_class("monospace");
    l.add_css_class("caption");
    e.set_child(Some(&l));
    e
}

/// The page in place of a host list with no groups at all: the IOMMU is off (with its
/// remedies), and a button to the demo host to see what Passage does.
pub fn no_groups_page(
    host: &Host,
    registry: &Registry,
    on_demo: impl Fn() + 'static,
) -> adw::StatusPage {
    let iommu = explain::iommu(host);
    let page = adw::StatusPage::new();
    page.set_icon_name(Some("computer-fail-symbolic"));
    if iommu.enabled {
        page.set_title(&tr("No IOMMU groups on this host"));
        page.set_description(Some(&tr(
            "The kernel shows no isolation groups, so there is nothing a guest could be given.",
        )));
    } else {
        page.set_title(&tr("No IOMMU on this host"));
        let text = words(&iommu_notices(&iommu), "\n\n");
        page.set_description(Some(&gtk::glib::markup_escape_text(&text)));
    }
    page.set_child(Some(&demo_button(registry, on_demo)));
    page
}

/// The page in place of the host list when the host could not be read at all.
pub fn unreadable_page(
    raw: &str,
    registry: &Registry,
    on_demo: impl Fn() + 'static,
) -> adw::StatusPage {
    let page = adw::StatusPage::new();
    page.set_icon_name(Some("dialog-error-symbolic"));
    page.set_title(&tr("Passage could not read this host"));
    page.set_description(Some(&gtk::glib::markup_escape_text(&tr(
        "This host's devices could not be read. The details below say why; the demo host shows what Passage does meanwhile.",
    ))));
    let b = gtk::Box::new(gtk::Orientation::Vertical, 12);
    b.append(&demo_button(registry, on_demo));
    b.append(&details(raw));
    page.set_child(Some(&b));
    page
}

/// Another machine that could not be reached: its name, the one line that says why (ssh's
/// reason, or its helper's), and the way back to this computer; the machine menu still offers
/// the others.
pub fn unreachable_page(
    host: &str,
    why: &str,
    registry: &Registry,
    on_local: impl Fn() + 'static,
) -> adw::StatusPage {
    let page = adw::StatusPage::new();
    page.set_icon_name(Some("network-offline-symbolic"));
    page.set_title(&trf("Passage could not reach {host}", &[("host", host)]));
    page.set_description(Some(&gtk::glib::markup_escape_text(why)));
    let back = gtk::Button::with_label(&tr("Back to This Computer"));
    back.add_css_class("pill");
    back.add_css_class("suggested-action");
    back.set_halign(gtk::Align::Center);
    back.set_tooltip_text(Some(&tr(
        "Other machines stay in the machine menu at the top left",
    )));
    back.connect_clicked(move |_| on_local());
    crate::registry::enter(&registry.buttons, "open-local".into(), &back);
    page.set_child(Some(&back));
    page
}

fn demo_button(registry: &Registry, on_demo: impl Fn() + 'static) -> gtk::Button {
    let demo = gtk::Button::with_label(&tr("Open the Demo Host"));
    demo.add_css_class("pill");
    demo.add_css_class("suggested-action");
    demo.set_halign(gtk::Align::Center);
    demo.set_tooltip_text(Some(&tr(
        "A workstation with a GPU to give away, bundled with Passage: nothing on this machine changes",
    )));
    demo.connect_clicked(move |_| on_demo());
    crate::registry::enter(&registry.buttons, "open-demo".into(), &demo);
    demo
}

/// The guest pane's page when there is no guest to drop a group on.
pub fn no_guests_page(no_bus: bool) -> adw::StatusPage {
    let page = adw::StatusPage::new();
    page.add_css_class("compact");
    if no_bus {
        page.set_icon_name(Some("network-offline-symbolic"));
        page.set_title(&tr("No system bus"));
        page.set_description(Some(&gtk::glib::markup_escape_text(&tr(
            "libvirt's guests are listed over the system bus, which this session does not have. Add a guest profile for plain QEMU, crosvm, cloud-hypervisor or Proxmox: “passagectl guests add NAME”.",
        ))));
    } else {
        page.set_icon_name(Some("computer-symbolic"));
        page.set_title(&tr("No guests yet"));
        page.set_description(Some(&gtk::glib::markup_escape_text(&tr(
            "Create a virtual machine in virt-manager or GNOME Boxes, or add a guest profile: “passagectl guests add NAME”. It appears here, ready for a group.",
        ))));
    }
    page
}

/// Apply's page when the helper is out of reach: why, and how to get it.
pub fn helper_page(u: &Unreachable) -> adw::StatusPage {
    let n = helper_notice(u);
    let page = adw::StatusPage::new();
    page.set_icon_name(Some("system-run-symbolic"));
    page.set_title(&n.title);
    page.set_description(Some(&gtk::glib::markup_escape_text(&n.body)));
    if let Some(d) = &n.details {
        page.set_child(Some(&details(d)));
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Host {
        let source =
            passage_core::demo::Source::open(Some(passage_core::demo::DemoHost::Workstation), None)
                .expect("the demo host");
        passage_core::scan::scan(source.root()).expect("the demo host scans")
    }

    #[test]
    fn no_bus_is_said_once_in_words_with_the_raw_error_only_in_the_details() {
        let raw = "failed to connect to `unix:path=/var/run/dbus/system_bus_socket`: No such file or directory (os error 2)";
        let t = Troubles {
            helper: Some(Unreachable::NoSystemBus(raw.into())),
            libvirt: Some(raw.into()),
            ..Default::default()
        };
        let n = notices(&demo(), &t, &[]);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].title, "No system bus");
        assert!(!n[0].body.contains("os error"), "{}", n[0].body);
        assert!(n[0].body.contains("systemctl start dbus"), "{}", n[0].body);
        assert_eq!(n[0].details.as_deref(), Some(raw));
        assert!(!words(&n, "\n").contains("os error"));
    }

    #[test]
    fn a_missing_helper_and_libvirt_are_two_notices_each_saying_what_to_do() {
        let t = Troubles {
            helper: Some(Unreachable::NotInstalled),
            libvirt: Some("org.freedesktop.DBus.Error.ServiceUnknown".into()),
            ..Default::default()
        };
        let n = notices(&demo(), &t, &[]);
        let titles: Vec<&str> = n.iter().map(|n| n.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "The Passage helper is not installed",
                "libvirt's guests could not be listed"
            ]
        );
        assert!(n[0].body.contains("make install"));
        assert!(n[1].body.contains("systemctl start libvirtd"));
        assert_eq!(
            n[1].details.as_deref(),
            Some("org.freedesktop.DBus.Error.ServiceUnknown")
        );
    }

    #[test]
    fn a_host_with_the_iommu_on_and_nothing_missing_has_no_notice() {
        assert!(notices(&demo(), &Troubles::default(), &[]).is_empty());
    }
}
