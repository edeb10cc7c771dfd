//! The host's PCI tree as a picture: where every device sits, a box around each IOMMU group,
//! and the port or bridge that makes a group the shape it is. Plain values (rectangles in
//! pixels, lines as points), no drawing toolkit: `passagectl draw` writes them as SVG
//! ([`svg`]) and the app draws the same layout with GTK widgets.
//!
//! The layout is a tidy tree of *clusters*, read left to right: the root complex, then what
//! hangs off it, one column per level. A cluster is an IOMMU group (drawn as a box around its
//! members, the members laid out as their own small tree inside it), a device without a group
//! (the IOMMU is off), a root bus, or a fold of one PF's virtual functions. Each cluster hangs
//! beside the cluster holding the bridge above it (where a group hangs from several, the first
//! one reached from the root buses); clusters hanging from one cluster are stacked, each
//! subtree in a band of rows no other subtree uses. That is why no two boxes can
//! overlap, whatever the kernel's grouping: the kernel's groups are taken as they are (never
//! recomputed), and a group whose members hang from several places still gets one box — the
//! odd links are drawn as plain lines from their real parents.
//!
//! Written here rather than taken from a crate: the tree-layout crates (`reingold-tilford`) place
//! single nodes, and the graph ones (`layout-rs`, a dot-style layered layout) have no nested
//! clusters; neither can promise that a box holds exactly its group and nothing else.

use crate::address::{GroupId, PciAddress};
use crate::config::PortType;
use crate::explain::{self, State};
use crate::i18n::{tr, trf};
use crate::model::{Device, Host};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A device's rectangle.
pub const NODE_W: f64 = 210.0;
pub const NODE_H: f64 = 40.0;
/// Between rows and columns inside a group's box.
const ROW_GAP: f64 = 8.0;
const COL_GAP: f64 = 28.0;
/// A group box's padding and header.
const PAD: f64 = 8.0;
const HEADER: f64 = 24.0;
/// Between stacked clusters, and between a cluster and those hanging from it.
const STACK_GAP: f64 = 12.0;
const HANG_GAP: f64 = 36.0;
/// Lines from different ports of one box run down their own columns.
const TRUNK_STEP: f64 = 6.0;

/// A rectangle in the picture's pixels, origin top left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn right(&self) -> f64 {
        self.x + self.w
    }
    pub fn bottom(&self) -> f64 {
        self.y + self.h
    }
    /// True when the two share some area (touching edges do not count).
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }
    /// True when `o` lies inside (edges may touch).
    pub fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x && o.y >= self.y && o.right() <= self.right() && o.bottom() <= self.bottom()
    }
    pub fn contains_point(&self, x: f64, y: f64) -> bool {
        x >= self.x && x <= self.right() && y >= self.y && y <= self.bottom()
    }
    fn mid_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// What a node stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A root bus as sysfs names it (`pci0000:00`).
    RootBus(String),
    Device(PciAddress),
    /// One PF's virtual functions, folded into a count until opened.
    Fold {
        pf: PciAddress,
        vfs: Vec<PciAddress>,
    },
}

/// How a node is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    RootComplex,
    /// Host bridges and other chipset functions no guest could use.
    Chipset,
    /// A PCIe port or a PCI-to-PCI bridge: something with devices below it.
    Port,
    Endpoint,
    Fold,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::RootComplex => "root",
            Role::Chipset => "chipset",
            Role::Port => "port",
            Role::Endpoint => "endpoint",
            Role::Fold => "fold",
        }
    }
}

/// A mark on a node or a box: why a group is shared. `code` is the reason's code
/// (`shape-no-acs`, `shape-pci-bridge`, `shape-multifunction`, `shape-kernel-quirk`), `label`
/// the one or two words shown, `message` the reason's sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub code: String,
    pub label: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub rect: Rect,
    pub role: Role,
    /// First line: the address, or the root bus, or "127 virtual functions".
    pub title: String,
    /// Second line: the device's name.
    pub subtitle: String,
    pub marks: Vec<Mark>,
    /// For ports and bridges: whether they isolate what is below them, and why; for the rest
    /// what a pointer or a screen reader is told about the node.
    pub note: String,
    /// The group box holding it.
    pub group: Option<GroupId>,
}

impl Node {
    pub fn address(&self) -> Option<PciAddress> {
        match self.kind {
            NodeKind::Device(a) => Some(a),
            _ => None,
        }
    }
}

/// An IOMMU group's box.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBox {
    pub group: GroupId,
    pub rect: Rect,
    pub state: State,
    /// The guest the plan gives it to, or the guest that holds it.
    pub guest: Option<String>,
    /// "Group 14 · available", "Group 19 · assigned → win11".
    pub header: String,
    /// "NVIDIA GP106 + HD Audio".
    pub title: String,
    /// What a screen reader says for the box.
    pub label: String,
    /// Indices into [`Layout::nodes`], in address order.
    pub nodes: Vec<usize>,
    /// A kernel quirk that joins members for reasons no single device shows.
    pub marks: Vec<Mark>,
}

/// A line from a node to one below it in the PCI tree: `from` is the parent (a bridge or the
/// root bus), `to` the child. Points run from the parent's right edge to the child's left edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub points: Vec<(f64, f64)>,
    /// To a fold of virtual functions.
    pub dashed: bool,
}

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<Node>,
    pub boxes: Vec<GroupBox>,
    pub edges: Vec<Edge>,
    /// The IOMMU is on (there are groups to draw).
    pub iommu: bool,
}

impl Layout {
    pub fn node_of(&self, a: PciAddress) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.kind == NodeKind::Device(a))
    }
    pub fn box_of(&self, g: GroupId) -> Option<usize> {
        self.boxes.iter().position(|b| b.group == g)
    }
    /// The boxes, nodes and edges that show inside `view` (what the app makes widgets for).
    pub fn visible(&self, view: &Rect) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let boxes = (0..self.boxes.len())
            .filter(|i| self.boxes[*i].rect.overlaps(view))
            .collect();
        let nodes = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].rect.overlaps(view))
            .collect();
        let edges = (0..self.edges.len())
            .filter(|i| {
                let p = &self.edges[*i].points;
                let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
                for (x, y) in p {
                    x0 = x0.min(*x);
                    y0 = y0.min(*y);
                    x1 = x1.max(*x);
                    y1 = y1.max(*y);
                }
                Rect {
                    x: x0,
                    y: y0,
                    w: (x1 - x0).max(1.0),
                    h: (y1 - y0).max(1.0),
                }
                .overlaps(view)
            })
            .collect();
        (boxes, nodes, edges)
    }
}

/// What to draw.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Draw every virtual function; otherwise a PF's VFs that each have a group of their own
    /// fold into one node with a count.
    pub all_vfs: bool,
    /// PFs whose VFs are drawn even while folding.
    pub opened: BTreeSet<PciAddress>,
    /// Only these groups and what leads to them (the groups of the bridges above them).
    pub only: Option<BTreeSet<GroupId>>,
    /// The guest each group goes to (the plan's or a definition's), for the box's header.
    pub guests: BTreeMap<GroupId, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Root(usize),
    Group(GroupId),
    Lone(PciAddress),
    Fold(PciAddress),
}

/// A cluster while it is laid out.
struct Cluster {
    key: Key,
    /// Node indices, each with its column and row inside the cluster.
    members: Vec<(usize, usize, usize)>,
    w: f64,
    h: f64,
    pad: f64,
    header: f64,
    x: f64,
    y: f64,
    children: Vec<usize>,
    /// Nodes of this cluster that clusters hang from, top to bottom.
    trunks: Vec<usize>,
}

/// Lays the host out. The kernel's groups are taken as they are; nothing is recomputed.
pub fn layout(host: &Host, opts: &Options) -> Layout {
    let (drawn, folds) = drawn_devices(host, opts);
    let iommu = host.iommu_enabled();

    // Nodes: root buses first, then devices in address order, then folds.
    let mut nodes: Vec<Node> = Vec::new();
    let mut roots: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &drawn {
        if let Some(d) = host.device(*a) {
            roots.entry(d.root_bus.as_str()).or_insert(0);
        }
    }
    for (name, idx) in roots.iter_mut() {
        *idx = nodes.len();
        nodes.push(Node {
            kind: NodeKind::RootBus(name.to_string()),
            rect: Rect {
                x: 0.0,
                y: 0.0,
                w: NODE_W,
                h: NODE_H,
            },
            role: Role::RootComplex,
            title: name.to_string(),
            subtitle: tr("root complex"),
            marks: Vec::new(),
            note: trf(
                "The root complex {bus}: the CPU's side of the PCI tree.",
                &[("bus", name)],
            ),
            group: None,
        });
    }
    let mut index: HashMap<PciAddress, usize> = HashMap::with_capacity(drawn.len());
    let below = below_each(host);
    for a in &drawn {
        let Some(d) = host.device(*a) else { continue };
        index.insert(*a, nodes.len());
        nodes.push(device_node(d, &below, iommu));
    }
    for (pf, vfs) in &folds {
        nodes.push(fold_node(host, *pf, vfs));
    }

    // Each node's cluster.
    let key_of_device = |d: &Device| match d.group {
        Some(g) if host.groups.contains_key(&g) => Key::Group(g),
        _ => Key::Lone(d.address),
    };
    let mut keys: Vec<Key> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        keys.push(match &n.kind {
            NodeKind::RootBus(_) => Key::Root(i),
            NodeKind::Device(a) => match host.device(*a) {
                Some(d) => key_of_device(d),
                None => Key::Lone(*a),
            },
            NodeKind::Fold { pf, .. } => Key::Fold(*pf),
        });
    }
    // Each node's parent node: the bridge above, else its root bus.
    let root_of = |d: &Device| roots.get(d.root_bus.as_str()).copied();
    let mut parent: Vec<Option<usize>> = vec![None; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        parent[i] = match &n.kind {
            NodeKind::RootBus(_) => None,
            // A device named as its own parent (no scan makes one) hangs from its root bus.
            NodeKind::Device(a) => host.device(*a).and_then(|d| {
                d.parent
                    .filter(|p| p != a)
                    .and_then(|p| index.get(&p).copied())
                    .or_else(|| root_of(d))
            }),
            // A PF's VFs hang where the VFs do (the bridge above their bus).
            NodeKind::Fold { pf, vfs } => vfs
                .first()
                .and_then(|v| host.device(*v))
                .or_else(|| host.device(*pf))
                .and_then(|d| {
                    d.parent
                        .and_then(|p| index.get(&p).copied())
                        .or_else(|| root_of(d))
                }),
        };
    }

    // Clusters, their members in node order (address order).
    let mut cluster_index: BTreeMap<Key, usize> = BTreeMap::new();
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut cluster_of: Vec<usize> = vec![0; nodes.len()];
    for (i, k) in keys.iter().enumerate() {
        let c = *cluster_index.entry(*k).or_insert_with(|| {
            let boxed = matches!(k, Key::Group(_));
            clusters.push(Cluster {
                key: *k,
                members: Vec::new(),
                w: 0.0,
                h: 0.0,
                pad: if boxed { PAD } else { 0.0 },
                header: if boxed { HEADER } else { 0.0 },
                x: 0.0,
                y: 0.0,
                children: Vec::new(),
                trunks: Vec::new(),
            });
            clusters.len() - 1
        });
        clusters[c].members.push((i, 0, 0));
        cluster_of[i] = c;
    }

    // Nodes something outside their cluster hangs from: their line leaves to the right, so
    // their own members below them start on the next row instead of beside them.
    let mut hangs_out = vec![false; nodes.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            if cluster_of[*p] != cluster_of[i] {
                hangs_out[*p] = true;
            }
        }
    }

    // Inside each cluster: its members as a small tree (parent links inside the cluster),
    // one column per level, a row per leaf, a parent on its first child's row.
    for c in clusters.iter_mut() {
        let inside: BTreeSet<usize> = c.members.iter().map(|m| m.0).collect();
        let mut kids: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut tops: Vec<usize> = Vec::new();
        for (n, _, _) in &c.members {
            match parent[*n].filter(|p| inside.contains(p)) {
                Some(p) => kids.entry(p).or_default().push(*n),
                None => tops.push(*n),
            }
        }
        let mut place: HashMap<usize, (usize, usize)> = HashMap::new();
        let mut row = 0usize;
        let mut cols = 1usize;
        // Depth-first without recursion: (node, depth). Members whose parent links loop
        // inside the cluster (no scan makes such a model; a hostile one may) are reached by
        // starting again from each member still unplaced, in address order.
        let mut starts = tops.clone();
        starts.extend(c.members.iter().map(|m| m.0));
        for start in starts {
            if place.contains_key(&start) {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            while let Some((n, depth)) = stack.pop() {
                if place.contains_key(&n) {
                    continue;
                }
                place.insert(n, (depth, row));
                cols = cols.max(depth + 1);
                let ks: Vec<usize> = kids
                    .get(&n)
                    .map(|ks| {
                        ks.iter()
                            .copied()
                            .filter(|k| !place.contains_key(k))
                            .collect()
                    })
                    .unwrap_or_default();
                if ks.is_empty() || hangs_out[n] {
                    row += 1;
                }
                for k in ks.iter().rev() {
                    stack.push((*k, depth + 1));
                }
            }
        }
        let rows = row.max(1);
        for m in c.members.iter_mut() {
            let (col, r) = place.get(&m.0).copied().unwrap_or((0, 0));
            m.1 = col;
            m.2 = r;
        }
        c.w = 2.0 * c.pad + cols as f64 * NODE_W + (cols - 1) as f64 * COL_GAP;
        c.h = c.header + c.pad + rows as f64 * NODE_H + (rows - 1) as f64 * ROW_GAP;
        if c.header == 0.0 {
            c.h = rows as f64 * NODE_H + (rows - 1) as f64 * ROW_GAP;
        }
    }

    // Which cluster each hangs from: breadth first from the root buses, so every cluster is
    // placed once even where the kernel's groups make the cluster graph something other than a
    // tree.
    let mut links: BTreeMap<usize, BTreeSet<(usize, usize)>> = BTreeMap::new(); // parent cluster → (child cluster, attach node)
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            let (cp, ci) = (cluster_of[*p], cluster_of[i]);
            if cp != ci {
                links.entry(cp).or_default().insert((ci, *p));
            }
        }
    }
    let mut hung: Vec<Option<(usize, usize)>> = vec![None; clusters.len()]; // (parent cluster, attach node)
    let mut seen = vec![false; clusters.len()];
    let mut top: Vec<usize> = roots.values().map(|n| cluster_of[*n]).collect();
    let mut queue: std::collections::VecDeque<usize> = top.iter().copied().collect();
    for t in &top {
        seen[*t] = true;
    }
    loop {
        while let Some(c) = queue.pop_front() {
            if let Some(ls) = links.get(&c) {
                for (child, at) in ls {
                    if !seen[*child] {
                        seen[*child] = true;
                        hung[*child] = Some((c, *at));
                        queue.push_back(*child);
                    }
                }
            }
        }
        // Whatever no root reaches (a tree with a cycle in its parent links) stands on its own.
        match (0..clusters.len()).find(|c| !seen[*c]) {
            Some(c) => {
                seen[c] = true;
                top.push(c);
                queue.push_back(c);
            }
            None => break,
        }
    }
    // Order: by the attach node's place in the parent, then by the first member; a fold right
    // after its PF.
    let order_key = |c: usize, clusters: &Vec<Cluster>| -> (usize, usize, PciAddress, u8) {
        let at = hung[c].map(|(pc, at)| {
            let m = clusters[pc].members.iter().find(|m| m.0 == at);
            m.map(|m| (m.2, m.1)).unwrap_or((0, 0))
        });
        let (r, col) = at.unwrap_or((0, 0));
        let (addr, sub) = match clusters[c].key {
            Key::Fold(pf) => (pf, 1),
            _ => (
                clusters[c]
                    .members
                    .first()
                    .and_then(|m| nodes[m.0].address())
                    .unwrap_or(PciAddress {
                        domain: 0,
                        bus: 0,
                        slot: 0,
                        function: 0,
                    }),
                0,
            ),
        };
        (r, col, addr, sub)
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); clusters.len()];
    for (c, h) in hung.iter().enumerate() {
        if let Some((pc, _)) = h {
            children[*pc].push(c);
        }
    }
    // Every node of a cluster with a line to a cluster hanging from it gets a column of its
    // own for that line.
    let mut attach: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); clusters.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            let (cp, ci) = (cluster_of[*p], cluster_of[i]);
            if cp != ci && hung[ci].map(|h| h.0) == Some(cp) {
                attach[cp].insert(*p);
            }
        }
    }
    for (pc, ch) in children.iter_mut().enumerate() {
        ch.sort_by_key(|c| order_key(*c, &clusters));
        let mut trunks: Vec<usize> = attach[pc].iter().copied().collect();
        let pos = |n: usize| {
            clusters[pc]
                .members
                .iter()
                .find(|m| m.0 == n)
                .map(|m| (m.2, m.1))
                .unwrap_or((0, 0))
        };
        trunks.sort_by_key(|n| pos(*n));
        clusters[pc].trunks = trunks;
    }
    for (c, ch) in children.into_iter().enumerate() {
        clusters[c].children = ch;
    }

    // Place: each cluster at the top of its band, what hangs from it stacked to its right.
    let margin = 0.0;
    let mut y = margin;
    let mut width: f64 = 0.0;
    for t in &top {
        let h = place(&mut clusters, *t, margin, y, &mut width);
        y += h + 2.0 * STACK_GAP;
    }
    let height = (y - 2.0 * STACK_GAP).max(NODE_H);

    // Node rectangles from their clusters.
    for c in &clusters {
        for (n, col, row) in &c.members {
            nodes[*n].rect = Rect {
                x: c.x + c.pad + *col as f64 * (NODE_W + COL_GAP),
                y: c.y + c.header + *row as f64 * (NODE_H + ROW_GAP),
                w: NODE_W,
                h: NODE_H,
            };
        }
    }

    // Edges, each along the real parent link.
    let mut edges = Vec::with_capacity(nodes.len());
    for (i, p) in parent.iter().enumerate() {
        let Some(p) = *p else { continue };
        let (a, b) = (nodes[p].rect, nodes[i].rect);
        let (x0, y0, x1, y1) = (a.right(), a.mid_y(), b.x, b.mid_y());
        let (cp, ci) = (cluster_of[p], cluster_of[i]);
        let column = if cp == ci {
            b.x - COL_GAP / 2.0
        } else if hung[ci].map(|h| h.0) == Some(cp) {
            let c = &clusters[cp];
            let k = c.trunks.iter().position(|t| *t == p).unwrap_or(0);
            let n = c.trunks.len().max(1);
            c.x + c.w + HANG_GAP / 2.0 + TRUNK_STEP * (n - 1 - k) as f64
        } else {
            (x0 + x1) / 2.0
        };
        let points = if (y0 - y1).abs() < 0.5 {
            vec![(x0, y0), (x1, y1)]
        } else {
            vec![(x0, y0), (column, y0), (column, y1), (x1, y1)]
        };
        edges.push(Edge {
            from: p,
            to: i,
            points,
            dashed: matches!(nodes[i].kind, NodeKind::Fold { .. }),
        });
    }

    // Boxes, with the verdicts of the groups drawn (states and the shape marks).
    let drawn_groups: Vec<usize> = clusters
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.key, Key::Group(_)))
        .map(|(i, _)| i)
        .collect();
    use rayon::prelude::*;
    let verdicts: Vec<explain::GroupVerdict> = drawn_groups
        .par_iter()
        .filter_map(|c| match clusters[*c].key {
            Key::Group(g) => host.groups.get(&g).map(|gr| explain::group(host, gr)),
            _ => None,
        })
        .collect();
    let mut boxes = Vec::with_capacity(verdicts.len());
    for (c, v) in drawn_groups.iter().zip(verdicts) {
        let cl = &clusters[*c];
        let guest = opts.guests.get(&v.id).cloned();
        let state = v.state.label();
        let header = match &guest {
            Some(gname) => trf(
                "Group {n} · {state} → {guest}",
                &[
                    ("n", &v.id.to_string()),
                    ("state", &state),
                    ("guest", gname),
                ],
            ),
            None => trf(
                "Group {n} · {state}",
                &[("n", &v.id.to_string()), ("state", &state)],
            ),
        };
        let mut members: Vec<usize> = cl.members.iter().map(|m| m.0).collect();
        members.sort_unstable();
        let mut box_marks = Vec::new();
        for r in &v.reasons {
            let label = match r.code.as_str() {
                "shape-no-acs" => tr("no ACS"),
                "shape-pci-bridge" => tr("PCIe-to-PCI"),
                "shape-multifunction" => tr("multifunction"),
                "shape-kernel-quirk" => tr("quirk"),
                // Members that are not PCI functions are not drawn; the box says they go too.
                "non-pci-members" => tr("non-PCI members"),
                _ => continue,
            };
            let mark = Mark {
                code: r.code.clone(),
                label,
                message: r.message.clone(),
            };
            // On the device the reason names; a slot's mark on its first drawn function.
            let target = r.device.and_then(|a| {
                members
                    .iter()
                    .copied()
                    .find(|n| nodes[*n].address() == Some(a))
                    .or_else(|| {
                        members.iter().copied().find(|n| {
                            nodes[*n]
                                .address()
                                .is_some_and(|m| r.code == "shape-multifunction" && m.same_slot(a))
                        })
                    })
            });
            match target {
                Some(n) => nodes[n].marks.push(mark),
                None => box_marks.push(mark),
            }
        }
        let label = trf(
            "Group {n}, {state}: {title}, {count} devices",
            &[
                ("n", &v.id.to_string()),
                ("state", &state),
                ("title", &v.title),
                ("count", &v.devices.len().to_string()),
            ],
        );
        for n in &members {
            nodes[*n].group = Some(v.id);
        }
        boxes.push(GroupBox {
            group: v.id,
            rect: Rect {
                x: cl.x,
                y: cl.y,
                w: cl.w,
                h: cl.h,
            },
            state: v.state,
            guest,
            header,
            title: v.title,
            label,
            nodes: members,
            marks: box_marks,
        });
    }

    Layout {
        width,
        height,
        nodes,
        boxes,
        edges,
        iommu,
    }
}

/// Places cluster `c` at (x, y) and what hangs from it; returns the height of its band.
fn place(clusters: &mut Vec<Cluster>, c: usize, x: f64, y: f64, width: &mut f64) -> f64 {
    // Iterative, so a deep (or hostile) tree cannot exhaust the stack: a frame per cluster,
    // with the next child to place and the running y.
    struct Frame {
        c: usize,
        next: usize,
        cy: f64,
        child_x: f64,
    }
    let start = |clusters: &mut Vec<Cluster>, c: usize, x: f64, y: f64, width: &mut f64| {
        clusters[c].x = x;
        clusters[c].y = y;
        *width = width.max(x + clusters[c].w);
        let n = clusters[c].trunks.len().max(1);
        Frame {
            c,
            next: 0,
            cy: y,
            child_x: x + clusters[c].w + HANG_GAP + TRUNK_STEP * (n - 1) as f64,
        }
    };
    let mut heights: HashMap<usize, f64> = HashMap::new();
    let mut stack = vec![start(clusters, c, x, y, width)];
    while let Some(f) = stack.last_mut() {
        if f.next > 0 {
            // The child placed last is done: move below its band.
            let done = clusters[f.c].children[f.next - 1];
            f.cy += heights.get(&done).copied().unwrap_or(0.0) + STACK_GAP;
        }
        if f.next < clusters[f.c].children.len() {
            let child = clusters[f.c].children[f.next];
            f.next += 1;
            let (cx, cy) = (f.child_x, f.cy);
            let frame = start(clusters, child, cx, cy, width);
            stack.push(frame);
        } else {
            let Some(f) = stack.pop() else { break };
            let own = clusters[f.c].h;
            let band = if clusters[f.c].children.is_empty() {
                own
            } else {
                (f.cy - STACK_GAP - clusters[f.c].y).max(own)
            };
            heights.insert(f.c, band);
        }
    }
    heights.get(&c).copied().unwrap_or(0.0)
}

/// Which devices are drawn one by one, and which PFs' VFs fold into a count.
fn drawn_devices(
    host: &Host,
    opts: &Options,
) -> (BTreeSet<PciAddress>, BTreeMap<PciAddress, Vec<PciAddress>>) {
    let mut folds: BTreeMap<PciAddress, Vec<PciAddress>> = BTreeMap::new();
    if let Some(only) = &opts.only {
        // The chosen groups, the bridges above their members, and those bridges' whole groups,
        // until nothing more is added: every box drawn holds all of its members.
        let mut set: BTreeSet<PciAddress> = BTreeSet::new();
        let mut work: Vec<PciAddress> = Vec::new();
        for g in only {
            if let Some(gr) = host.groups.get(g) {
                work.extend(gr.devices.iter().filter(|a| host.device(**a).is_some()));
            }
        }
        while let Some(a) = work.pop() {
            if !set.insert(a) {
                continue;
            }
            let Some(d) = host.device(a) else { continue };
            for b in &d.bridges {
                if host.device(*b).is_some() && !set.contains(b) {
                    work.push(*b);
                }
            }
            if let Some(gr) = d.group.and_then(|g| host.groups.get(&g)) {
                for m in &gr.devices {
                    if host.device(*m).is_some() && !set.contains(m) {
                        work.push(*m);
                    }
                }
            }
        }
        return (set, folds);
    }
    let mut set = BTreeSet::new();
    for (a, d) in &host.devices {
        let fold = !opts.all_vfs
            && d.physfn.is_some_and(|pf| {
                host.device(pf).is_some() && !opts.opened.contains(&pf)
            })
            // Only a VF alone in its group (or with no group) folds: a box keeps its members.
            && match d.group.and_then(|g| host.groups.get(&g)) {
                Some(g) => g.devices.len() == 1 && g.other_members.is_empty(),
                None => true,
            }
            // A VF the plan gives to a guest stays in sight, with its guest on its box.
            && !d.group.is_some_and(|g| opts.guests.contains_key(&g));
        match (fold, d.physfn) {
            (true, Some(pf)) => folds.entry(pf).or_default().push(*a),
            _ => {
                set.insert(*a);
            }
        }
    }
    (set, folds)
}

fn short_address(a: PciAddress) -> String {
    if a.domain == 0 {
        format!("{:02x}:{:02x}.{:x}", a.bus, a.slot, a.function)
    } else {
        a.to_string()
    }
}

fn device_node(d: &Device, below: &HashMap<PciAddress, Vec<&Device>>, iommu: bool) -> Node {
    let role = if d.is_bridge() {
        Role::Port
    } else if d.is_chipset_glue() {
        Role::Chipset
    } else {
        Role::Endpoint
    };
    let note = if d.is_bridge() {
        port_note(
            d,
            below.get(&d.address).map(Vec::as_slice).unwrap_or(&[]),
            iommu,
        )
    } else {
        let driver = d.driver.as_deref().unwrap_or("-");
        trf(
            "{device} ({name}), driver {driver}.",
            &[
                ("device", &d.address.to_string()),
                ("name", &d.display_name()),
                ("driver", driver),
            ],
        )
    };
    Node {
        kind: NodeKind::Device(d.address),
        rect: Rect {
            x: 0.0,
            y: 0.0,
            w: NODE_W,
            h: NODE_H,
        },
        role,
        title: short_address(d.address),
        subtitle: d.display_name(),
        marks: Vec::new(),
        note,
        group: None,
    }
}

fn fold_node(host: &Host, pf: PciAddress, vfs: &[PciAddress]) -> Node {
    // What the folded VFs are doing, so folding hides no state: "120 in use, 7 assigned".
    use rayon::prelude::*;
    let each: Vec<State> = vfs
        .par_iter()
        .filter_map(|v| {
            let g = host.device(*v)?.group?;
            Some(explain::group(host, host.groups.get(&g)?).state)
        })
        .collect();
    let mut states: BTreeMap<State, usize> = BTreeMap::new();
    for st in each {
        *states.entry(st).or_default() += 1;
    }
    let counts: Vec<String> = states
        .iter()
        .map(|(st, n)| format!("{n} {}", st.label()))
        .collect();
    let groups: Vec<GroupId> = vfs
        .iter()
        .filter_map(|v| host.device(*v).and_then(|d| d.group))
        .collect();
    let range = match (groups.iter().min(), groups.iter().max()) {
        (Some(a), Some(b)) if a != b => format!("{a}–{b}"),
        (Some(a), _) => a.to_string(),
        _ => String::new(),
    };
    let title = trf("{n} virtual functions", &[("n", &vfs.len().to_string())]);
    let subtitle = if range.is_empty() {
        trf("of {pf}", &[("pf", &short_address(pf))])
    } else {
        trf(
            "of {pf} · groups {range}",
            &[("pf", &short_address(pf)), ("range", &range)],
        )
    };
    Node {
        kind: NodeKind::Fold {
            pf,
            vfs: vfs.to_vec(),
        },
        rect: Rect {
            x: 0.0,
            y: 0.0,
            w: NODE_W,
            h: NODE_H,
        },
        role: Role::Fold,
        note: if counts.is_empty() {
            trf(
                "{n} virtual functions of {pf}; open them to see each one.",
                &[("n", &vfs.len().to_string()), ("pf", &pf.to_string())],
            )
        } else {
            trf(
                "{n} virtual functions of {pf}, each in an IOMMU group of its own ({states}); open them to see each one.",
                &[
                    ("n", &vfs.len().to_string()),
                    ("pf", &pf.to_string()),
                    ("states", &counts.join(", ")),
                ],
            )
        },
        title,
        subtitle,
        marks: Vec::new(),
        group: None,
    }
}

/// Every bridge's devices below it, in one pass over the host (a port's note needs them; asking
/// the whole host again for each port would make drawing quadratic).
fn below_each(host: &Host) -> HashMap<PciAddress, Vec<&Device>> {
    let mut out: HashMap<PciAddress, Vec<&Device>> = HashMap::new();
    for d in host.devices.values() {
        for b in &d.bridges {
            out.entry(*b).or_default().push(d);
        }
    }
    out
}

/// Why a port or bridge does or does not isolate the devices below it, from the kernel's
/// groups (what is decided) and the port's ACS (the usual reason).
fn port_note(b: &Device, below: &[&Device], iommu: bool) -> String {
    let name = crate::explain::name(b);
    if !iommu {
        return trf(
            "{port}: the IOMMU is off, so nothing is isolated and there are no groups.",
            &[("port", &name)],
        );
    }
    if below.is_empty() {
        return trf("{port}: nothing is connected below it.", &[("port", &name)]);
    }
    let joined: Vec<String> = below
        .iter()
        .filter(|d| d.group.is_some() && d.group == b.group)
        .map(|d| d.address.to_string())
        .collect();
    let conventional = b.pcie_type == Some(PortType::PcieToPciBridge)
        || (b.capabilities.express == Some(false) && b.class.is_pci_bridge());
    if joined.is_empty() {
        return match b.capabilities.acs {
            Some(Some(a)) if a.isolates() => trf(
                "{port} isolates what is below it: ACS is on, so each device below can be in a group of its own.",
                &[("port", &name)],
            ),
            Some(_) => trf(
                "{port} isolates what is below it, though it shows no enabled ACS: the kernel vouches for this port (a quirk for this chipset, or the IOMMU tells the devices apart).",
                &[("port", &name)],
            ),
            None => trf(
                "{port} isolates what is below it (the devices below are in other groups; its ACS cannot be read without root).",
                &[("port", &name)],
            ),
        };
    }
    let list = joined.join(", ");
    if conventional {
        return trf(
            "{port} is a bridge to conventional PCI: the devices behind it ({devices}) reach memory under the bridge's requester id, so they share its group.",
            &[("port", &name), ("devices", &list)],
        );
    }
    match b.capabilities.acs {
        Some(Some(a)) if a.isolates() => trf(
            "{port} has ACS on, yet the kernel keeps {devices} in its group: a kernel quirk or the platform decided this.",
            &[("port", &name), ("devices", &list)],
        ),
        Some(_) => trf(
            "{port} does not isolate what is below it (no ACS, or ACS not enabled): {devices} share its group.",
            &[("port", &name), ("devices", &list)],
        ),
        None => trf(
            "{port} apparently does not isolate what is below it (its ACS cannot be read without root): {devices} share its group.",
            &[("port", &name), ("devices", &list)],
        ),
    }
}

/// The guest each group goes to: the plan's guest, else the guest holding it on the host.
pub fn guests_of(
    plan: &crate::plan::Plan,
    holders: &crate::view::Holders,
) -> BTreeMap<GroupId, String> {
    let mut out = holders.clone();
    for g in &plan.guests {
        for a in &g.groups {
            out.insert(a.group, g.name.clone());
        }
    }
    out
}

/// The picture as SVG 1.1 (valid against its DTD): boxes coloured by state with a legend, the
/// ports' notes and the marks' sentences as `<title>` tooltips, for bug reports and forum posts.
pub fn svg(l: &Layout, caption: &str) -> String {
    use std::fmt::Write;
    const M: f64 = 16.0;
    const LEGEND: f64 = 56.0;
    let w = l.width.max(4.0 * NODE_W) + 2.0 * M;
    let h = l.height + 2.0 * M + LEGEND;
    let mut s = String::with_capacity(1024 + l.nodes.len() * 700 + l.boxes.len() * 400);
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n\
<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
<title>{}</title>\n\
<style type=\"text/css\"><![CDATA[\n\
.bg{{fill:#ffffff}}\n\
.box{{stroke-width:2}}\n\
.available{{fill:#edf7ee;stroke:#2e7d32}}\n\
.in-use{{fill:#fff4e5;stroke:#e65100}}\n\
.host-critical{{fill:#fdecec;stroke:#c62828}}\n\
.assigned{{fill:#e8f1fc;stroke:#1565c0}}\n\
.hdr{{font-weight:bold;fill:#222222}}\n\
.node{{fill:#ffffff;stroke:#777777}}\n\
.port{{fill:#f1f1f6;stroke:#555577}}\n\
.chipset{{fill:#f4f4f4;stroke:#999999}}\n\
.root{{fill:#44475a;stroke:#44475a}}\n\
.fold{{fill:#fafafa;stroke:#777777;stroke-dasharray:4 3}}\n\
.t{{fill:#111111}}\n\
.root-t{{fill:#ffffff}}\n\
.sub{{fill:#555555}}\n\
.e{{fill:none;stroke:#666666;stroke-width:1.2}}\n\
.dash{{stroke-dasharray:4 3}}\n\
.mark{{fill:#ffe082;stroke:#b28704}}\n\
.mark-t{{fill:#4e3b00;font-size:9px}}\n\
]]></style>\n\
<rect class=\"bg\" x=\"0\" y=\"0\" width=\"{w:.0}\" height=\"{h:.0}\"/>\n",
        escape(caption)
    );
    // Caption and legend.
    let _ = writeln!(
        s,
        "<text class=\"hdr\" x=\"{M}\" y=\"{:.0}\" font-size=\"14\">{}</text>",
        M + 12.0,
        escape(caption)
    );
    let mut lx = M;
    for st in [
        State::Available,
        State::InUse,
        State::HostCritical,
        State::Assigned,
    ] {
        let _ = writeln!(
            s,
            "<rect class=\"box {}\" x=\"{lx:.0}\" y=\"{:.0}\" width=\"14\" height=\"14\"/><text class=\"t\" x=\"{:.0}\" y=\"{:.0}\">{}</text>",
            st.as_str(),
            M + 24.0,
            lx + 20.0,
            M + 35.0,
            escape(st.label())
        );
        lx += 130.0;
    }
    if !l.iommu {
        let _ = writeln!(
            s,
            "<text class=\"t\" x=\"{lx:.0}\" y=\"{:.0}\">{}</text>",
            M + 35.0,
            escape(tr("The IOMMU is off: there are no groups."))
        );
    }
    let _ = writeln!(s, "<g transform=\"translate({M},{:.0})\">", M + LEGEND);
    for b in &l.boxes {
        let r = b.rect;
        let _ = write!(
            s,
            "<g id=\"group-{}\"><title>{}</title><rect class=\"box {}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"6\" ry=\"6\"/><text class=\"hdr\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            b.group,
            escape(&b.label),
            b.state.as_str(),
            r.x,
            r.y,
            r.w,
            r.h,
            r.x + PAD,
            r.y + 16.0,
            escape(fit(&b.header, r.w - 2.0 * PAD - b.marks.iter().map(|m| mark_width(m) + 2.0).sum::<f64>()))
        );
        let mut mx = r.right() - PAD;
        for m in &b.marks {
            mx -= mark_width(m) + 2.0;
            mark_svg(&mut s, m, mx, r.y + 5.0);
        }
        s.push_str("</g>\n");
    }
    for e in &l.edges {
        let mut d = String::new();
        for (i, (x, y)) in e.points.iter().enumerate() {
            let _ = write!(d, "{}{x:.1} {y:.1}", if i == 0 { "M" } else { " L" });
        }
        let _ = writeln!(
            s,
            "<path class=\"e{}\" d=\"{d}\"/>",
            if e.dashed { " dash" } else { "" }
        );
    }
    for (ni, n) in l.nodes.iter().enumerate() {
        let r = n.rect;
        // Ids from numbers only: a root bus is named by the tree it was read from, which is
        // anyone's text.
        let id = match &n.kind {
            NodeKind::Device(a) => format!("dev-{}", a.to_string().replace([':', '.'], "-")),
            NodeKind::RootBus(_) => format!("root-{ni}"),
            NodeKind::Fold { pf, .. } => format!("vfs-{}", pf.to_string().replace([':', '.'], "-")),
        };
        let (cls, tcls) = match n.role {
            Role::RootComplex => ("root", "root-t"),
            Role::Port => ("port", "t"),
            Role::Chipset => ("chipset", "t"),
            Role::Endpoint => ("node", "t"),
            Role::Fold => ("fold", "t"),
        };
        let _ = write!(
            s,
            "<g id=\"{id}\"><title>{}</title><rect class=\"{cls}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"4\" ry=\"4\"/><text class=\"{tcls}\" x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\">{}</text><text class=\"{}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            escape(&n.note),
            r.x,
            r.y,
            r.w,
            r.h,
            r.x + 6.0,
            r.y + 15.0,
            escape(&n.title),
            if n.role == Role::RootComplex { "root-t" } else { "sub" },
            r.x + 6.0,
            r.y + 31.0,
            escape(fit(&n.subtitle, r.w - 12.0))
        );
        let mut mx = r.right() - 2.0;
        for m in &n.marks {
            mx -= mark_width(m) + 2.0;
            mark_svg(&mut s, m, mx, r.y + 3.0);
        }
        s.push_str("</g>\n");
    }
    s.push_str("</g>\n</svg>\n");
    s
}

fn mark_svg(s: &mut String, m: &Mark, x: f64, y: f64) {
    use std::fmt::Write;
    let _ = write!(
        s,
        "<g><title>{}</title><rect class=\"mark\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"13\" rx=\"3\" ry=\"3\"/><text class=\"mark-t\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
        escape(&m.message),
        mark_width(m),
        x + 3.0,
        y + 10.0,
        escape(fit_mark(&m.label))
    );
}

/// A mark's badge: its label in 9-pixel type, at most 90 pixels.
fn mark_width(m: &Mark) -> f64 {
    (fit_mark(&m.label).chars().count() as f64 * 5.2 + 7.0).min(90.0)
}

fn fit_mark(t: &str) -> String {
    let mut out: String = t.chars().take(16).collect();
    if t.chars().count() > 16 {
        out.pop();
        out.push('…');
    }
    out
}

/// Cuts text to about `width` pixels of an 11-pixel sans face, with an ellipsis.
fn fit(t: &str, width: f64) -> String {
    let max = (width / 6.2).max(1.0) as usize;
    if t.chars().count() <= max {
        return t.to_string();
    }
    let mut out: String = t.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Text for the SVG: XML 1.0 allows no control characters but tab and newline (and not U+FFFE,
/// U+FFFF), while names read from a tree (devices, non-PCI members) may hold any; those are
/// dropped and the rest escaped.
fn escape<'a>(t: impl Into<std::borrow::Cow<'a, str>>) -> String {
    let t: std::borrow::Cow<'a, str> = t.into();
    let clean: String = t
        .chars()
        .filter(|c| {
            (!c.is_control() || matches!(c, '\n' | '\t')) && !matches!(c, '\u{fffe}' | '\u{ffff}')
        })
        .collect();
    quick_xml::escape::escape(clean.as_str()).into_owned()
}
