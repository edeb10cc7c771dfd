//! Accessibility through GTK's C API where gtk4-rs (with `v4_8`) has no binding.

use gtk::prelude::*;

/// Gives a widget the name a screen reader speaks. gtk4-rs binds GtkAccessible only from GTK
/// 4.10, but the C function is in every GTK 4 (Debian 12 has 4.8), so it is declared here.
pub fn accessible_label(w: &impl IsA<gtk::Widget>, label: &str) {
    use gtk::glib::translate::ToGlibPtr;
    extern "C" {
        fn gtk_accessible_update_property_value(
            accessible: *mut std::ffi::c_void,
            n_properties: std::ffi::c_int,
            properties: *mut std::ffi::c_int,
            values: *const gtk::glib::gobject_ffi::GValue,
        );
    }
    /// `GTK_ACCESSIBLE_PROPERTY_LABEL` in gtkenums.h.
    const LABEL: std::ffi::c_int = 4;
    let value = label.to_value();
    let mut props = [LABEL];
    let widget: *mut gtk::ffi::GtkWidget = w.as_ref().to_glib_none().0;
    // SAFETY: every GtkWidget implements GtkAccessible; one property with one initialized
    // string GValue, both alive for the call.
    unsafe {
        gtk_accessible_update_property_value(
            widget.cast(),
            1,
            props.as_mut_ptr(),
            ToGlibPtr::<*const gtk::glib::gobject_ffi::GValue>::to_glib_none(&value).0,
        );
    }
}

/// Names a drop-down for screen readers: the drop-down and the button inside it that takes the
/// focus (GTK 4.8 leaves that one named after its type, "GtkToggleButton").
pub fn label_dropdown(dd: &gtk::DropDown, label: &str) {
    accessible_label(dd, label);
    if let Some(button) = dd.first_child() {
        accessible_label(&button, label);
    }
}
