//! Where the probe finds live widgets it reports (and the keyboard's context-menu shortcut
//! finds the focused card). Components own their widgets; they enter weak references here, so
//! nothing is kept alive by being listed.

use gtk::glib::WeakRef;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Weak references by key, shared between whoever registers and whoever reads.
pub type Widgets<K, W> = Rc<RefCell<BTreeMap<K, WeakRef<W>>>>;

/// Texts by name, shared the same way.
pub type Texts = Rc<RefCell<BTreeMap<String, String>>>;

/// The widgets the probe reports, by what the tests call them.
#[derive(Clone, Default)]
pub struct Registry {
    /// Group number → its card, while a list row shows it.
    pub cards: Widgets<u32, gtk::Box>,
    /// Group number → its card's device expander.
    pub expanders: Widgets<u32, gtk::Expander>,
    /// Group number → its card's "Why?" button.
    pub why_buttons: Widgets<u32, gtk::Button>,
    /// Group number → its card's state badge.
    pub badges: Widgets<u32, gtk::Label>,
    /// Device address → its guest address entry, while its card is open.
    pub addresses: Widgets<String, gtk::Entry>,
    /// Guest name → its row in the guest pane.
    pub guests: Widgets<String, gtk::ListBoxRow>,
    /// Buttons by name: header ("export", "apply", "bridges"), a card's menu ("menu-…").
    pub buttons: Widgets<String, gtk::Button>,
    /// Text lines by name: "summary", "topology-note".
    pub labels: Widgets<String, gtk::Label>,
    /// Group number → its box in the Topology view, while it has a widget.
    pub topo_boxes: Widgets<u32, gtk::Box>,
    /// Device address (or root bus, or `vfs-PF`) → its node in the Topology view.
    pub topo_nodes: Widgets<String, gtk::Widget>,
    /// Texts that are not one label by name: "banner" (the notices' words), "status" (what
    /// the toast on screen says).
    pub texts: Texts,
    /// Scrolled areas by name ("topology"): where on screen their content is visible.
    pub panes: Widgets<String, gtk::Widget>,
}

/// Enters one widget under a key (replacing what was there).
pub fn enter<K: Ord, W: gtk::glib::object::ObjectType>(map: &Widgets<K, W>, key: K, w: &W) {
    use gtk::glib::prelude::ObjectExt;
    map.borrow_mut().insert(key, w.downgrade());
}
