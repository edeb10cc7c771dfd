//! Starting GTK for the app: the display, the resources compiled into the binary (CSS, class
//! icons), the settings every window shares, the application's shortcuts.

use crate::app::AppInput;
use gtk::prelude::*;
use passage_core::i18n::trf;
use passage_core::names;
use relm4::RelmApp;

/// Opens the display and readies the application; a sentence when there is no display.
pub fn start_gtk() -> Result<RelmApp<AppInput>, String> {
    gtk::init().map_err(|e| {
        trf(
            "cannot open a display ({error}); start Passage in a graphical session, or use passagectl",
            &[("error", &e.to_string())],
        )
    })?;
    // The CSS and the device-class icons travel inside the binary (build.rs). relm4 names the
    // application after it is built, so GApplication never derives a resource base path from
    // the id and GTK would not look in the resource's icons/: both are wired here.
    gtk::gio::resources_register_include!("passage.gresource")
        .map_err(|e| format!("the app's built-in resources are missing: {e}"))?;
    let app = RelmApp::new(names::APP_ID).with_args(Vec::new());
    relm4::main_application().set_resource_base_path(Some(names::RESOURCE_BASE));
    let css = gtk::CssProvider::new();
    css.load_from_resource(&format!("{}/style.css", names::RESOURCE_BASE));
    if let Some(display) = gtk::gdk::Display::default() {
        gtk::style_context_add_provider_for_display(
            &display,
            &css,
            gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
        );
        gtk::IconTheme::for_display(&display)
            .add_resource_path(&format!("{}/icons", names::RESOURCE_BASE));
    }
    // Long selectable texts ("Why?", errors) would show all selected whenever they get the
    // focus, which a window without a focused button gives them.
    if let Some(s) = gtk::Settings::default() {
        s.set_gtk_label_select_on_focus(false);
    }
    // Ctrl+Q and Ctrl+W close the window, as in every GNOME app (and keep where it was left).
    relm4::main_application().set_accels_for_action("window.close", &["<Control>q", "<Control>w"]);
    gtk::Window::set_default_icon_name(names::APP_ID);
    Ok(app)
}
