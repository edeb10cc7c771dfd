//! The host's groups: a one-column `TypedGridView` of section headers and cards, kept
//! imperative for speed (a 10,000-function host lists every group at once). A card is made
//! when its row is first drawn (or when a filter needs every card) and kept until the host
//! or the plan changes: listing 10,000 groups costs the rows on screen, and filtering never
//! computes a verdict twice.

use crate::a11y::accessible_label;
use crate::cards::{self, CardMsg, Emit, RowItem};
use crate::load::Facts;
use crate::registry::Registry;
use gtk::prelude::*;
use passage_core::demo::Source;
use passage_core::i18n::tr;
use passage_core::model::Host;
use passage_core::plan::Plan;
use passage_core::sketch::{self, Sketch};
use passage_core::view::{self, Card, Filter, Holders};
use passage_core::GroupId;
use relm4::typed_view::grid::TypedGridView;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

/// The cards made so far and what they are made from. Shared by the list and its rows (a
/// row asks for its card when GTK binds it); borrowed only for the length of one call, never
/// across a change to the list's model (which may bind rows at once).
#[derive(Default)]
pub struct CardBook {
    /// `None` while the app changes the host (it owns the host then, alone), while only a
    /// sketch of it is read, or when there is none.
    host: Option<Arc<Host>>,
    /// The host's first reading until the rest of it comes ([`HostList::finish`]), and where
    /// to read a drawn row's share of that rest.
    sketch: Option<(Sketch, Arc<Source>)>,
    plan: Plan,
    holders: Holders,
    made: HashMap<GroupId, Arc<Card>>,
}

impl CardBook {
    /// A group's card: the one made already, else made now (from a sketch, once the group's
    /// own facts are read: a handful of files).
    pub fn card(&mut self, g: GroupId) -> Option<Arc<Card>> {
        if let Some(c) = self.made.get(&g) {
            return Some(c.clone());
        }
        let c = match (&self.host, &mut self.sketch) {
            (Some(host), _) => view::card_of(host, &self.plan, &self.holders, g)?,
            (None, Some((sketch, source))) => {
                if let Err(e) = sketch.detail(source.root(), g) {
                    // The rest of the reading meets the same file and says so in the window.
                    tracing::warn!(group = %g, "{e}");
                    return None;
                }
                view::card_of(sketch.so_far(), &self.plan, &self.holders, g)?
            }
            (None, None) => return None,
        };
        let c = Arc::new(c);
        self.made.insert(g, c.clone());
        Some(c)
    }

    /// Where every group is listed and whether it has anything for a guest: the host, or as
    /// much of it as is read.
    fn placed(&self) -> Option<&Host> {
        match (&self.host, &self.sketch) {
            (Some(h), _) => Some(h),
            (None, Some((s, _))) => Some(s.so_far()),
            (None, None) => None,
        }
    }

    /// Makes every card not made yet, on every core: a filter on words, kinds or states
    /// reads them all. Done when such a filter is first asked for (~45 ms for 10,000 groups
    /// on two cores with nothing else running), not ahead of it: made while the list is first
    /// drawn they slow it, and made after it they hold memory (~24 MiB for 10,000) that most
    /// sessions never use. The window waits on these threads, so they run at its priority (not
    /// on the niced pool, which a busy machine would starve while the window stood still).
    fn make_all(&mut self) {
        // The app finishes a sketch before it asks a filter of the list.
        let Some(host) = &self.host else {
            return;
        };
        if self.made.len() == host.groups.len() {
            return;
        }
        self.made = view::cards(host, &self.plan, &self.holders)
            .into_iter()
            .collect();
    }
}

/// The list, its cards and which of them are open.
pub struct HostList {
    list: TypedGridView<RowItem, gtk::NoSelection>,
    scroller: gtk::ScrolledWindow,
    /// Every group by section, in order (filters redraw from this).
    outline: Vec<view::Outline>,
    book: Rc<RefCell<CardBook>>,
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
            outline: Vec::new(),
            book: Rc::default(),
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

    /// A host (or none) to list, with the plan and holders its cards show: every card made
    /// for the last one is forgotten (shown at the next [`HostList::show`]).
    pub fn set_host(&mut self, host: Option<Arc<Host>>, plan: &Plan, holders: &Holders) {
        let outline = host.as_deref().map(view::outline).unwrap_or_default();
        self.set_laid_out(host, outline, plan, holders);
    }

    /// [`HostList::set_host`] with the host's [`view::outline`] made already (off the main
    /// loop, while the host was read).
    pub fn set_laid_out(
        &mut self,
        host: Option<Arc<Host>>,
        outline: Vec<view::Outline>,
        plan: &Plan,
        holders: &Holders,
    ) {
        self.outline = outline;
        *self.book.borrow_mut() = CardBook {
            host,
            sketch: None,
            plan: plan.clone(),
            holders: holders.clone(),
            made: HashMap::new(),
        };
    }

    /// The first reading, whole or a sketch (read from `source`), laid out already.
    pub fn set_facts(
        &mut self,
        facts: Facts,
        source: Option<Arc<Source>>,
        outline: Vec<view::Outline>,
        plan: &Plan,
        holders: &Holders,
    ) {
        let (host, sketch) = match (facts, source) {
            (Facts::Whole(h), _) => (Some(h), None),
            (Facts::Sketch(s), Some(src)) => (None, Some((*s, src))),
            // Nowhere to read the rest from (the load never gives this).
            (Facts::Sketch(_), None) => (None, None),
        };
        self.set_laid_out(host, outline, plan, holders);
        self.book.borrow_mut().sketch = sketch;
    }

    /// Whether the list shows a sketch whose rest is still to come.
    pub fn sketched(&self) -> bool {
        self.book.borrow().sketch.is_some()
    }

    /// The sketch made whole by `read` (what was read off the main loop; the groups drawn
    /// meanwhile keep what their cards were made from): the host, shared from now on, and
    /// whether a device went away meanwhile (then the list must be laid out again).
    pub fn finish(&mut self, read: sketch::Read) -> Option<(Arc<Host>, bool)> {
        let mut book = self.book.borrow_mut();
        let (sketch, _) = book.sketch.take()?;
        let f = sketch.finish(read);
        let host = Arc::new(f.host);
        book.host = Some(host.clone());
        Some((host, f.moved))
    }

    /// The sketch made whole here and now (the person did something that needs the whole
    /// host before its rest came): read on every core at the window's priority.
    pub fn finish_here(&mut self) -> Option<Result<(Arc<Host>, bool), String>> {
        let mut book = self.book.borrow_mut();
        let (sketch, source) = book.sketch.take()?;
        Some(match sketch.finish_here(source.root()) {
            Ok(f) => {
                let host = Arc::new(f.host);
                book.host = Some(host.clone());
                Ok((host, f.moved))
            }
            Err(e) => Err(e.to_string()),
        })
    }

    /// The plan (or the holders) changed: every card is made again as it is drawn.
    pub fn set_plan(&mut self, plan: &Plan, holders: &Holders) {
        let mut book = self.book.borrow_mut();
        book.plan = plan.clone();
        book.holders = holders.clone();
        book.made.clear();
    }

    /// Gives up the list's share of the host, so that the app, its only owner again, changes
    /// it in place rather than copying it; [`HostList::took_back`] returns it.
    pub fn let_go(&mut self) {
        self.book.borrow_mut().host = None;
    }

    /// The host once changed (by one device's event; its group's card is redrawn by
    /// [`HostList::replace_card`], which says when the whole list must be made again).
    pub fn took_back(&mut self, host: Arc<Host>) {
        self.book.borrow_mut().host = Some(host);
    }

    /// Rebuilds the rows under a filter; typing in the search box costs this, and the first
    /// time every card not made yet, never a verdict made twice.
    pub fn show(&mut self, filter: &Filter) {
        self.list.clear();
        let mut rows = Vec::new();
        self.positions.clear();
        {
            let mut book = self.book.borrow_mut();
            let by_card = filter.needs_cards();
            if by_card {
                book.make_all();
            }
            for o in &self.outline {
                let shown: Vec<GroupId> = o
                    .groups
                    .iter()
                    .copied()
                    .filter(|g| match (book.placed(), by_card) {
                        (_, true) => book.made.get(g).is_some_and(|c| filter.matches(c)),
                        (Some(h), false) => !filter.assignable_only || view::assignable(h, *g),
                        (None, false) => false,
                    })
                    .collect();
                if shown.is_empty() {
                    continue;
                }
                rows.push(RowItem::header(&o.title));
                for g in shown {
                    self.positions.insert(g, rows.len() as u32);
                    rows.push(RowItem::card(
                        g,
                        self.book.clone(),
                        self.expanded.contains(&g),
                        self.emit.clone(),
                        self.registry.clone(),
                    ));
                }
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
        // A group whose first usable device changed (a function added or gone) may belong
        // under another port now: then the whole list is laid out again.
        {
            let mut book = self.book.borrow_mut();
            let now = book.host.as_deref().map(|h| view::section_title_of(h, g));
            let listed = self.outline.iter().find(|o| o.groups.contains(&g));
            if now.as_ref() != listed.map(|o| &o.title) {
                return false;
            }
            book.made.insert(g, Arc::new(card));
        }
        let expanded = self.expanded.contains(&g);
        self.list.remove(pos);
        self.list.insert(
            pos,
            RowItem::card(
                g,
                self.book.clone(),
                expanded,
                self.emit.clone(),
                self.registry.clone(),
            ),
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
