//! The host's groups: a one-column `TypedGridView` of section headers and cards, kept
//! imperative for speed (a 10,000-function host lists every group at once). It holds the
//! cards as last computed and redraws from them: filtering never computes a verdict again.

use crate::a11y::accessible_label;
use crate::cards::{self, CardMsg, Emit, RowItem};
use crate::registry::Registry;
use gtk::prelude::*;
use passage_core::i18n::tr;
use passage_core::view::{self, Card, Filter};
use passage_core::GroupId;
use relm4::typed_view::grid::TypedGridView;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The list, its cards and which of them are open.
pub struct HostList {
    list: TypedGridView<RowItem, gtk::NoSelection>,
    scroller: gtk::ScrolledWindow,
    /// Every card as last computed, by section (filters redraw from these). The list's rows
    /// share these cards rather than copying them.
    sections: Vec<view::Section>,
    /// Where each group's card is in the list (for redrawing one card).
    positions: BTreeMap<GroupId, u32>,
    expanded: BTreeSet<GroupId>,
    emit: Emit,
    registry: Registry,
}

impl HostList {
    /// An empty list whose cards send their gestures to `emit`.
    pub fn new(emit: Emit, registry: Registry) -> Self {
        // A one-column grid, not a GtkListView: GTK 4.8's list view keeps 200 rows alive
        // around what is on screen (GTK_LIST_VIEW_MAX_LIST_ITEMS), each one made, bound,
        // measured and drawn; its grid view keeps about 30 rows (GTK_GRID_VIEW_MAX_VISIBLE_ROWS).
        // On a 10,000-group host that is most of the time between "read" and "shown".
        let list: TypedGridView<RowItem, gtk::NoSelection> = TypedGridView::new();
        list.view.set_max_columns(1);
        list.view.add_css_class("groups");
        accessible_label(&list.view, &tr("IOMMU groups of this host"));
        let scroller = gtk::ScrolledWindow::new();
        scroller.set_vexpand(true);
        // Cards take the pane's width (their titles ellipsize), never scroll sideways: a
        // narrow window shows whole cards.
        scroller.set_policy(gtk::PolicyType::Never, gtk::PolicyType::Automatic);
        scroller.set_child(Some(&list.view));
        {
            // Shift+F10 or the Menu key on a focused card opens its context menu.
            let keys = gtk::ShortcutController::new();
            let (e, reg) = (emit.clone(), registry.clone());
            keys.add_shortcut(gtk::Shortcut::new(
                gtk::ShortcutTrigger::parse_string("<Shift>F10|Menu"),
                Some(gtk::CallbackAction::new(move |w, _| {
                    let window = w.root().and_downcast::<gtk::Window>();
                    match window.and_then(|win| cards::focused_group(&win, &reg)) {
                        Some(g) => {
                            e(CardMsg::Menu(g, None));
                            gtk::glib::Propagation::Stop
                        }
                        None => gtk::glib::Propagation::Proceed,
                    }
                })),
            ));
            list.view.add_controller(keys);
        }
        {
            // Enter on a card: "Assign to…".
            let e = emit.clone();
            list.view.connect_activate(move |view, pos| {
                if let Some(g) = cards::group_at(view, pos) {
                    e(CardMsg::Choose(g));
                }
            });
        }
        Self {
            list,
            scroller,
            sections: Vec::new(),
            positions: BTreeMap::new(),
            expanded: BTreeSet::new(),
            emit,
            registry,
        }
    }

    /// The scrolled list, for the window's layout.
    pub fn widget(&self) -> &gtk::ScrolledWindow {
        &self.scroller
    }

    /// New cards for every group (shown at the next [`HostList::show`]).
    pub fn set_sections(&mut self, sections: Vec<view::Section>) {
        self.sections = sections;
    }

    /// Rebuilds the rows from the cached cards under a filter; typing in the search box costs
    /// this, never a new verdict for every group.
    pub fn show(&mut self, filter: &Filter) {
        self.list.clear();
        let mut rows = Vec::new();
        self.positions.clear();
        for s in view::filtered(&self.sections, filter) {
            rows.push(RowItem::header(&s.title));
            for c in s.cards {
                self.positions.insert(c.group, rows.len() as u32);
                let expanded = self.expanded.contains(&c.group);
                rows.push(RowItem::card(
                    c,
                    expanded,
                    self.emit.clone(),
                    self.registry.clone(),
                ));
            }
        }
        self.list.extend_from_iter(rows);
    }

    /// Redraws one group's card in place; false when the list must be rebuilt instead (the
    /// group is not listed, or no longer matches the filter).
    pub fn replace_card(&mut self, card: Card, filter: &Filter) -> bool {
        if !filter.matches(&card) {
            return false;
        }
        let g = card.group;
        let Some(&pos) = self.positions.get(&g) else {
            return false;
        };
        let card = Arc::new(card);
        if let Some(cached) = self
            .sections
            .iter_mut()
            .flat_map(|s| s.cards.iter_mut())
            .find(|c| c.group == g)
        {
            *cached = card.clone();
        }
        let expanded = self.expanded.contains(&g);
        self.list.remove(pos);
        self.list.insert(
            pos,
            RowItem::card(card, expanded, self.emit.clone(), self.registry.clone()),
        );
        true
    }

    /// Remembers an open (or closed) card, so a redraw keeps it as the person left it.
    pub fn set_expanded(&mut self, g: GroupId, on: bool) {
        if on {
            self.expanded.insert(g);
        } else {
            self.expanded.remove(&g);
        }
    }
}
