//! The keyboard shortcuts (one table for the accelerators and the window that lists them,
//! Ctrl+?) and the About window.

use adw::prelude::*;
use passage_core::i18n::tr;
use passage_core::names;

/// The window's actions and their keys (GTK's accelerator syntax).
pub const ACCELS: &[(&str, &[&str])] = &[
    ("win.undo", &["<Control>z"]),
    ("win.redo", &["<Control><Shift>z", "<Control>y"]),
    ("win.search", &["<Control>f"]),
    ("win.view-list", &["<Control>1"]),
    ("win.view-topology", &["<Control>2"]),
    ("win.connect-machine", &["<Control><Shift>o"]),
    ("win.readiness", &["<Control><Shift>r"]),
    ("win.show-help-overlay", &["<Control>question"]),
];

/// The shortcuts window's sections: a title and (title, accelerator) rows. Keys the widgets
/// handle themselves (Enter on a group, its menu key) are listed beside the actions'.
fn groups() -> Vec<(String, Vec<(String, &'static str)>)> {
    vec![
        (
            tr("Plan"),
            vec![
                (tr("Assign the focused group to a guest"), "Return"),
                (tr("The focused group's menu"), "<Shift>F10 Menu"),
                (tr("Undo the last change to the plan"), "<Control>z"),
                (tr("Redo"), "<Control><Shift>z"),
            ],
        ),
        (
            tr("View"),
            vec![
                (tr("Search devices, drivers, groups"), "<Control>f"),
                (tr("The groups as a list"), "<Control>1"),
                (tr("The PCI topology"), "<Control>2"),
                (tr("Connect to another machine"), "<Control><Shift>o"),
                (
                    tr("Host readiness: what stands in the way, and its fixes"),
                    "<Control><Shift>r",
                ),
            ],
        ),
        (
            tr("General"),
            vec![
                (tr("Keyboard shortcuts"), "<Control>question"),
                (tr("Quit"), "<Control>q"),
            ],
        ),
    ]
}

fn escape(s: &str) -> String {
    gtk::glib::markup_escape_text(s).to_string()
}

/// The shortcuts window (the window's `show-help-overlay`, Ctrl+?), built from GtkBuilder
/// XML: GTK 4.8 has no API to add shortcuts to its groups in code.
pub fn window() -> gtk::ShortcutsWindow {
    let mut xml = String::from(
        r#"<interface><object class="GtkShortcutsWindow" id="w"><property name="modal">1</property><child><object class="GtkShortcutsSection"><property name="section-name">shortcuts</property>"#,
    );
    for (title, rows) in groups() {
        xml.push_str(&format!(
            r#"<child><object class="GtkShortcutsGroup"><property name="title">{}</property>"#,
            escape(&title)
        ));
        for (what, keys) in rows {
            xml.push_str(&format!(
                r#"<child><object class="GtkShortcutsShortcut"><property name="title">{}</property><property name="accelerator">{}</property></object></child>"#,
                escape(&what),
                escape(keys)
            ));
        }
        xml.push_str("</object></child>");
    }
    xml.push_str("</object></child></object></interface>");
    let b = gtk::Builder::from_string(&xml);
    b.object("w")
        .unwrap_or_else(|| gtk::ShortcutsWindow::builder().build())
}

/// The About window: what Passage is, its version, licence, site and where to report a bug.
pub fn about(parent: &gtk::Window) -> adw::AboutWindow {
    let w = adw::AboutWindow::builder()
        .transient_for(parent)
        .modal(true)
        .application_name(tr("Passage"))
        .application_icon(names::APP_ID)
        .developer_name(tr("The Passage developers"))
        .version(env!("CARGO_PKG_VERSION"))
        .comments(tr(
            "Give host PCI devices to virtual machines, a whole IOMMU group at a time, with the reasons in words.",
        ))
        .website(env!("CARGO_PKG_REPOSITORY"))
        .issue_url(format!("{}/issues", env!("CARGO_PKG_REPOSITORY")))
        // GTK's GPL_3_0 is "version 3 or later", as Cargo.toml says.
        .license_type(gtk::License::Gpl30)
        .build();
    // Translators: your names, one per line, shown in About.
    let credits = tr("translator-credits");
    if credits != "translator-credits" {
        w.set_translator_credits(&credits);
    }
    w.present();
    w
}
