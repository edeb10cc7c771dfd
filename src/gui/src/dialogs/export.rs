//! Export: choose a guest and a format, see the text, copy it or save it.

use crate::a11y::label_dropdown;
use adw::prelude::*;
use passage_core::export::{self, Format};
use passage_core::i18n::tr;
use passage_core::model::Host;
use passage_core::plan::Plan;
use relm4::prelude::*;

/// The window: the plan and host as they were when it opened, and what it shows.
pub struct ExportDialog {
    plan: Plan,
    host: std::sync::Arc<Host>,
    /// Guests with groups, in the drop-down's order.
    guests: Vec<String>,
    guest: u32,
    format: u32,
    /// The configuration text (the probe reads it too).
    pub buffer: gtk::TextBuffer,
    /// The export's notes, or why there is nothing to export.
    notes: String,
    /// QEMU's form for this host, and why (`export::qemu::choose_iommufd`).
    iommufd: (bool, Option<String>),
}

/// What to export.
pub struct ExportInit {
    /// The main window (the dialog stays above it).
    pub parent: gtk::Window,
    /// The plan.
    pub plan: Plan,
    /// The host the plan is for.
    /// (Shared: the window reads it, the app changes its own copy on a device event.)
    pub host: std::sync::Arc<Host>,
    /// Whether QEMU's arguments take the iommufd form on this host, and the note saying why.
    pub iommufd: (bool, Option<String>),
}

/// What a person did in the window.
#[derive(Debug)]
pub enum ExportInput {
    /// A guest chosen (its place in the drop-down).
    Guest(u32),
    /// A format chosen (its place in [`Format::ALL`]).
    Format(u32),
    /// Copy the text to the clipboard.
    Copy,
    /// Save the text to a file the person chooses.
    Save,
}

#[relm4::component(pub)]
impl Component for ExportDialog {
    type Init = ExportInit;
    type Input = ExportInput;
    type Output = ();
    type CommandOutput = ();

    view! {
        #[root]
        #[name = "window"]
        adw::Window {
            set_title: Some(&tr("Export")),
            set_transient_for: Some(&init.parent),
            set_modal: true,
            set_default_size: (760, 560),
            #[wrap(Some)]
            set_content = &gtk::Box {
                set_orientation: gtk::Orientation::Vertical,
                set_spacing: 8,
                adw::HeaderBar {
                    #[wrap(Some)]
                    set_title_widget = &adw::WindowTitle {
                        set_title: &tr("Export"),
                        set_subtitle: &tr("The plan as a guest's configuration"),
                    },
                },
                gtk::Box {
                    set_orientation: gtk::Orientation::Horizontal,
                    set_spacing: 8,
                    set_margin_top: 8,
                    set_margin_start: 8,
                    set_margin_end: 8,
                    gtk::Label {
                        set_label: &tr("Guest"),
                    },
                    #[local_ref]
                    guest_dd -> gtk::DropDown {
                        connect_selected_notify[sender] => move |d| {
                            sender.input(ExportInput::Guest(d.selected()));
                        },
                    },
                    gtk::Label {
                        set_label: &tr("Format"),
                    },
                    #[local_ref]
                    format_dd -> gtk::DropDown {
                        connect_selected_notify[sender] => move |d| {
                            sender.input(ExportInput::Format(d.selected()));
                        },
                    },
                    gtk::Box {
                        set_hexpand: true,
                    },
                    gtk::Button {
                        set_label: &tr("Copy"),
                        connect_clicked => ExportInput::Copy,
                    },
                    gtk::Button {
                        set_label: &tr("Save…"),
                        connect_clicked => ExportInput::Save,
                    },
                    gtk::Button {
                        set_label: &tr("Close"),
                        connect_clicked[window] => move |_| window.close(),
                    },
                },
                gtk::ScrolledWindow {
                    set_vexpand: true,
                    gtk::TextView {
                        set_buffer: Some(&model.buffer),
                        set_monospace: true,
                        set_editable: false,
                    },
                },
                gtk::Label {
                    set_wrap: true,
                    set_xalign: 0.0,
                    add_css_class: "dim-label",
                    set_margin_start: 8,
                    set_margin_bottom: 8,
                    #[watch]
                    set_label: &model.notes,
                },
            },
        }
    }

    fn init(
        init: Self::Init,
        root: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let guests: Vec<String> = init
            .plan
            .guests
            .iter()
            .filter(|g| !g.groups.is_empty())
            .map(|g| g.name.clone())
            .collect();
        let guest_refs: Vec<&str> = guests.iter().map(String::as_str).collect();
        let guest_dd = &gtk::DropDown::from_strings(&guest_refs);
        let labels: Vec<String> = Format::ALL.iter().map(|f| f.label()).collect();
        let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let format_dd = &gtk::DropDown::from_strings(&label_refs);
        let mut model = ExportDialog {
            plan: init.plan.clone(),
            host: init.host.clone(),
            guests,
            guest: 0,
            format: 0,
            buffer: gtk::TextBuffer::new(None),
            notes: String::new(),
            iommufd: init.iommufd.clone(),
        };
        model.render();
        let widgets = view_output!();
        label_dropdown(guest_dd, &tr("Guest"));
        label_dropdown(format_dd, &tr("Format"));
        super::close_on_escape(root.upcast_ref());
        root.present();
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: ExportInput, _sender: ComponentSender<Self>, root: &Self::Root) {
        match msg {
            ExportInput::Guest(i) => {
                self.guest = i;
                self.render();
            }
            ExportInput::Format(i) => {
                self.format = i;
                self.render();
            }
            ExportInput::Copy => root.clipboard().set_text(&self.text()),
            ExportInput::Save => self.save(root.upcast_ref()),
        }
    }
}

impl ExportDialog {
    fn chosen_format(&self) -> Format {
        Format::ALL
            .get(self.format as usize)
            .copied()
            .unwrap_or(Format::Libvirt)
    }

    /// The chosen guest's configuration in the chosen format, or why there is none.
    fn render(&mut self) {
        let g = self.guests.get(self.guest as usize).map(String::as_str);
        let f = self.chosen_format();
        let qemu = f == Format::Qemu;
        let opts = export::Options {
            iommufd: qemu && self.iommufd.0,
            ..Default::default()
        };
        match export::export(&self.plan, &self.host, g, f, &opts) {
            Ok(e) => {
                self.buffer.set_text(&e.text);
                let first = self.iommufd.1.as_ref().filter(|_| qemu);
                self.notes = first
                    .into_iter()
                    .chain(&e.notes)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            Err(e) => {
                self.buffer.set_text("");
                self.notes = e.to_string();
            }
        }
    }

    fn text(&self) -> String {
        let b = &self.buffer;
        b.text(&b.start_iter(), &b.end_iter(), false).to_string()
    }

    /// Asks where, then writes the text there (atomically).
    fn save(&self, root: &gtk::Window) {
        let f = self.chosen_format();
        let chooser = gtk::FileChooserNative::new(
            Some(&tr("Save the configuration")),
            Some(root),
            gtk::FileChooserAction::Save,
            Some(&tr("Save")),
            Some(&tr("Cancel")),
        );
        chooser.set_current_name(&format!("passage-{}.{}", f.as_str(), f.extension()));
        let text = self.text();
        chooser.connect_response(move |c, resp| {
            if resp == gtk::ResponseType::Accept {
                if let Some(path) = c.file().and_then(|f| f.path()) {
                    let _ = passage_core::store::write_atomic(&path, text.as_bytes());
                }
            }
            c.destroy();
        });
        chooser.show();
    }
}
