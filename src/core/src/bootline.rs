//! The kernel command line as this system's boot configuration says it: where it lives (GRUB's
//! `/etc/default/grub`, kernel-install's and Proxmox's `/etc/kernel/cmdline`; Fedora's GRUB
//! with BLS entries and OSTree systems are named, not edited), the command that carries a
//! change to the boot loader, and the exact edit a remedy names — computed here,
//! without writing anything. The helper writes (`passage-helper --boot-line`), so `passagectl
//! fix --dry-run` and the real change show the same edit.
//!
//! Only what is plainly written is edited. A value built from shell (a `$(…)`, another
//! variable, a continued line) or a file that is not text is "unknown": the doctor says where
//! and gives the words to add by hand, and no fix is offered. Odd content never becomes a
//! wrong edit.

use crate::host::HostRoot;
use crate::i18n::{tr, trf};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How this system boots, as far as its command line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrangement {
    /// GRUB with a generated `grub.cfg` (Debian, Ubuntu, Arch, openSUSE): `/etc/default/grub`
    /// and `/etc/default/grub.d/*.cfg`, then update-grub or grub-mkconfig.
    Grub,
    /// systemd-boot or another BLS loader through kernel-install: `/etc/kernel/cmdline`.
    KernelInstall,
    /// Proxmox VE booting through proxmox-boot-tool (ZFS root, systemd-boot): `/etc/kernel/cmdline`.
    Proxmox,
}

impl Arrangement {
    pub fn describe(self) -> &'static str {
        match self {
            Arrangement::Grub => "GRUB",
            Arrangement::KernelInstall => "kernel-install",
            Arrangement::Proxmox => "proxmox-boot-tool",
        }
    }
}

/// The two GRUB variables that make the default entry's line, in the order grub-mkconfig joins
/// them. Recovery entries get only the first.
pub const GRUB_VARS: [&str; 2] = ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"];
/// The variable a parameter is added to: normal boots only, as the distributions' guides say.
pub const GRUB_ADD_TO: &str = "GRUB_CMDLINE_LINUX_DEFAULT";
pub const GRUB_DEFAULT: &str = "etc/default/grub";
pub const GRUB_DIR: &str = "etc/default/grub.d";
pub const KERNEL_CMDLINE: &str = "etc/kernel/cmdline";
/// Where the helper notes a change it made to the boot line during this boot (a `tmpfs`: gone
/// after the reboot, which is when the change takes effect).
pub const PENDING_NOTE: &str = "run/passage/boot-line-pending";

/// One plain assignment of a GRUB variable found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// Relative to the host root.
    pub file: PathBuf,
    /// 0-based line.
    pub line: usize,
    pub variable: String,
    /// The words it sets (what follows `$VAR` when it appends to itself).
    pub words: Vec<String>,
    /// `NAME="$NAME …"`: adds to what earlier files set.
    pub appends: bool,
    pub quote: Quote,
    /// What follows the value on its line (blanks and a comment), kept on rewrite.
    #[serde(skip)]
    pub rest: String,
    /// Indentation and `export `, kept on rewrite.
    #[serde(skip)]
    pub prefix: String,
}

/// The boot configuration, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootConfig {
    pub arrangement: Arrangement,
    /// The files that hold the line, relative to the root, in the order they are read.
    pub files: Vec<PathBuf>,
    /// The line the next boot of the default entry gets.
    pub line: Vec<String>,
    /// GRUB only: every plain assignment, in the order the shell runs them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assignments: Vec<Assignment>,
    /// The commands that carry a change to the boot loader, each an absolute program and its
    /// arguments, run in this order.
    pub regenerate: Vec<Vec<String>>,
}

/// What could be read of the boot configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Boot {
    Known(BootConfig),
    /// Why it cannot be edited here, in words (and the running line still is what it is).
    Unknown {
        why: String,
    },
}

/// A change to the command line: words to add and words or keys to take away
/// (`vfio-pci.ids` takes `vfio-pci.ids=…` of any value). An added word replaces another value
/// only of a parameter that holds one ([`replaces`]); any other is added beside what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Edit {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

fn key(word: &str) -> &str {
    word.split_once('=').map_or(word, |(k, _)| k)
}

/// Whether adding `new` takes `old` away: only parameters the kernel reads once, whose last
/// value wins and where two values contradict each other (`intel_iommu=off` against
/// `intel_iommu=on`). `intel_iommu=igfx_off` is an option beside `on`, `video=` is per output
/// (`video=efifb:off` leaves `video=DP-1:…` alone) and `initcall_blacklist=` a list: those are
/// never replaced.
pub fn replaces(new: &str, old: &str) -> bool {
    if new == old || key(new) != key(old) {
        return false;
    }
    let value = |w: &str| {
        w.split_once('=')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    };
    match key(new) {
        "intel_iommu" | "amd_iommu" => {
            let switch = |v: &str| matches!(v, "on" | "off" | "disabled");
            switch(&value(new)) && switch(&value(old))
        }
        "iommu" | "intremap" => true,
        _ => false,
    }
}

/// A word Passage may write into a boot file: no blank, nothing a shell reads inside double
/// or single quotes, or after them, as something else (`$`, a backquote, a backslash, quotes,
/// `;&|<>()`), no control character. The words of a remedy are fixed ones; this also lets a
/// word that was in the file come back verbatim (`video=DP-1:2560x1440@144`).
pub fn valid_word(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 512
        && w.chars()
            .all(|c| c.is_ascii_graphic() && !"\"'$`\\;&|<>()".contains(c))
}

impl Edit {
    /// Whether `word` is one this edit takes away (or replaces with one of its own).
    fn drops(&self, word: &str) -> bool {
        self.remove
            .iter()
            .any(|r| r == word || (!r.contains('=') && key(word) == r))
            || self.add.iter().any(|a| replaces(a, word))
    }

    /// The line after the edit.
    pub fn apply(&self, line: &[String]) -> Vec<String> {
        let mut out: Vec<String> = line.iter().filter(|w| !self.drops(w)).cloned().collect();
        for a in &self.add {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// The edit that undoes this one on `before` (the line it was applied to): what it added
    /// goes, what it took comes back.
    pub fn inverse(&self, before: &[String]) -> Edit {
        Edit {
            add: before.iter().filter(|w| self.drops(w)).cloned().collect(),
            remove: self
                .add
                .iter()
                .filter(|a| !before.contains(a))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// Every word is one Passage may write.
    pub fn check(&self) -> Result<(), String> {
        match self.add.iter().chain(&self.remove).find(|w| !valid_word(w)) {
            Some(w) => Err(trf(
                "“{word}” is not a kernel parameter Passage writes",
                &[("word", w)],
            )),
            None => Ok(()),
        }
    }
}

/// How a value was written, so a rewrite writes it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quote {
    Double,
    Single,
    None,
}

/// One plain assignment, as parsed from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    /// Indentation and `export `, kept on rewrite.
    prefix: String,
    name: String,
    words: Vec<String>,
    appends: bool,
    quote: Quote,
    /// What follows the value (blanks and a `# comment`), kept on rewrite.
    rest: String,
}

/// The identifiers a line names (`$GRUB_CMDLINE_LINUX` names GRUB_CMDLINE_LINUX).
fn names_var(line: &str) -> bool {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| GRUB_VARS.contains(&w))
}

/// The shell's compound commands: inside one, an assignment may not run (or run twice).
fn is_control(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    matches!(
        first,
        "if" | "then"
            | "elif"
            | "else"
            | "fi"
            | "case"
            | "esac"
            | "for"
            | "while"
            | "until"
            | "do"
            | "done"
            | "{"
            | "}"
            | "function"
            | "select"
    ) || line.contains("()")
        || line.contains(";;")
}

/// Parses one line of a GRUB defaults file: `Ok(None)` for a line that does not name the
/// command-line variables; `Err` for one that names them in any way but a plain assignment
/// this module can write back exactly (shell it would have to run, a value it would misread).
fn parse_assignment(line: &str) -> Result<Option<Parsed>, String> {
    if !names_var(line) {
        return Ok(None);
    }
    let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
    let t = &line[indent.len()..];
    let (export, t) = match t.strip_prefix("export") {
        Some(r) if r.starts_with([' ', '\t']) => {
            let r2 = r.trim_start();
            (format!("export{}", &r[..r.len() - r2.len()]), r2)
        }
        _ => (String::new(), t),
    };
    let not_plain = || {
        tr("it is not a plain assignment (a condition, a command or more than one statement on the line)")
    };
    let Some((name, value)) = t.split_once('=') else {
        return Err(not_plain());
    };
    if !GRUB_VARS.contains(&name) {
        return Err(not_plain());
    }
    let (inner, rest, quote) = if let Some(v) = value.strip_prefix('"') {
        let end = v
            .find('"')
            .ok_or_else(|| tr("the quote is not closed on its line"))?;
        let inner = &v[..end];
        if inner.contains(['`', '\\']) {
            return Err(tr("it runs shell (a backquote or a backslash)"));
        }
        (inner, &v[end + 1..], Quote::Double)
    } else if let Some(v) = value.strip_prefix('\'') {
        let end = v
            .find('\'')
            .ok_or_else(|| tr("the quote is not closed on its line"))?;
        (&v[..end], &v[end + 1..], Quote::Single)
    } else {
        let end = value.find([' ', '\t']).unwrap_or(value.len());
        if value[..end].contains(['$', '`', '\\', '(', '"', '\'', ';', '&', '|', '<', '>']) {
            return Err(tr("its value is built from other variables or commands"));
        }
        (&value[..end], &value[end..], Quote::None)
    };
    // After the value: nothing, or blanks and a comment. `"a"#b` is the word a#b to the shell.
    let after = rest.trim_start();
    if !(after.is_empty() || (after.starts_with('#') && rest.len() > after.len())) {
        return Err(tr("more follows the value on its line"));
    }
    let self_ref = [format!("${name}"), format!("${{{name}}}")];
    let (appends, body) = match self_ref.iter().find_map(|r| inner.strip_prefix(r.as_str())) {
        Some(b) if quote == Quote::Double && (b.is_empty() || b.starts_with(' ')) => (true, b),
        _ => (false, inner),
    };
    if quote == Quote::Double && body.contains('$') {
        return Err(tr("its value is built from other variables or commands"));
    }
    let words: Vec<String> = body.split_whitespace().map(str::to_string).collect();
    if let Some(w) = words.iter().find(|w| !valid_word(w)) {
        return Err(trf(
            "it holds “{word}”, which Passage would not write back",
            &[("word", w)],
        ));
    }
    Ok(Some(Parsed {
        prefix: format!("{indent}{export}"),
        name: name.to_string(),
        words,
        appends,
        quote,
        rest: rest.to_string(),
    }))
}

/// The GRUB defaults files in the order grub-mkconfig sources them (its glob leaves out
/// names that start with a dot).
fn grub_files(root: &HostRoot) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(GRUB_DEFAULT)];
    if let Ok(names) = root.read_dir(GRUB_DIR) {
        for n in names {
            let n = n.to_string_lossy().into_owned();
            if n.ends_with(".cfg") && !n.starts_with('.') {
                files.push(Path::new(GRUB_DIR).join(n));
            }
        }
    }
    files
}

fn read_text(root: &HostRoot, rel: &Path) -> Result<String, String> {
    let bytes = root.read(rel).map_err(|e| {
        trf(
            "/{file} cannot be read ({error})",
            &[
                ("file", &rel.display().to_string()),
                ("error", &e.to_string()),
            ],
        )
    })?;
    String::from_utf8(bytes).map_err(|_| {
        trf(
            "/{file} is not text",
            &[("file", &rel.display().to_string())],
        )
    })
}

/// `GRUB_ENABLE_BLSCFG=true`, however it is written.
fn enables_bls(line: &str) -> bool {
    let t = line.trim_start();
    let t = t
        .strip_prefix("export")
        .filter(|r| r.starts_with([' ', '\t']))
        .map_or(t, str::trim_start);
    t.strip_prefix("GRUB_ENABLE_BLSCFG=").is_some_and(|v| {
        let v = v.split('#').next().unwrap_or("").trim();
        v.trim_matches(['"', '\'']) == "true"
    })
}

/// Reads GRUB's settings: every assignment of the two variables, in order; whether GRUB reads
/// BLS entries.
fn read_grub(root: &HostRoot) -> Result<(Vec<PathBuf>, Vec<Assignment>, bool), String> {
    let files = grub_files(root);
    let mut assignments = Vec::new();
    let mut bls = false;
    for f in &files {
        let text = read_text(root, f)?;
        let at = |i: usize, why: String| {
            trf(
                "/{file} line {line} sets the command line in a way Passage does not edit: {why}",
                &[
                    ("file", &f.display().to_string()),
                    ("line", &(i + 1).to_string()),
                    ("why", &why),
                ],
            )
        };
        let mut control: Option<usize> = None;
        let mut sets = false;
        for (i, l) in text.lines().enumerate() {
            if l.trim_start().starts_with('#') || l.trim().is_empty() {
                continue;
            }
            if l.trim_end().ends_with('\\') && (names_var(l) || control.is_none()) {
                return Err(trf(
                    "/{file} line {line} continues on the next line",
                    &[
                        ("file", &f.display().to_string()),
                        ("line", &(i + 1).to_string()),
                    ],
                ));
            }
            if is_control(l) {
                control.get_or_insert(i);
            }
            bls |= enables_bls(l);
            if let Some(p) = parse_assignment(l).map_err(|why| at(i, why))? {
                sets = true;
                assignments.push(Assignment {
                    file: f.clone(),
                    line: i,
                    variable: p.name,
                    words: p.words,
                    appends: p.appends,
                    quote: p.quote,
                    rest: p.rest,
                    prefix: p.prefix,
                });
            }
        }
        // In a file with conditions or loops, an assignment may not run, or run twice: what
        // the shell makes of it cannot be told by reading.
        if let (true, Some(i)) = (sets, control) {
            return Err(at(i, tr("the file has shell conditions or loops")));
        }
    }
    Ok((files, assignments, bls))
}

/// The value each GRUB variable ends with after the shell ran every file.
fn grub_values(assignments: &[Assignment]) -> [Vec<String>; 2] {
    let mut vals: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for a in assignments {
        let Some(i) = GRUB_VARS.iter().position(|v| *v == a.variable) else {
            continue;
        };
        if !a.appends {
            vals[i].clear();
        }
        vals[i].extend(a.words.iter().cloned());
    }
    vals
}

/// The first of these programs the root has, as the absolute path it runs by.
fn program(root: &HostRoot, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| root.present(p.trim_start_matches('/')))
        .map(|p| p.to_string())
}

/// The kernels kernel-install should write entries for: each installed one with an image,
/// as `(release, image)`.
fn installed_kernels(root: &HostRoot) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for base in ["usr/lib/modules", "lib/modules"] {
        let Ok(names) = root.read_dir(base) else {
            continue;
        };
        for n in names {
            let release = n.to_string_lossy().into_owned();
            if !valid_word(&release) || out.iter().any(|(r, _)| *r == release) {
                continue;
            }
            let images = [
                format!("{base}/{release}/vmlinuz"),
                format!("boot/vmlinuz-{release}"),
            ];
            if let Some(img) = images.iter().find(|i| root.present(i.as_str())) {
                out.push((release, format!("/{img}")));
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// Boot Loader Specification entries are what boots: kernel-install is told so
/// (`layout=bls`), or entries are there in one of the places loaders read them.
fn bls_in_use(root: &HostRoot) -> bool {
    let layout = root
        .read_string("etc/kernel/install.conf")
        .ok()
        .is_some_and(|t| t.lines().any(|l| l.trim().replace(' ', "") == "layout=bls"));
    layout
        || [
            "boot/loader/entries",
            "efi/loader/entries",
            "boot/efi/loader/entries",
        ]
        .iter()
        .any(|d| {
            root.read_dir(d)
                .is_ok_and(|n| n.iter().any(|n| n.to_string_lossy().ends_with(".conf")))
        })
}

/// How this root boots and the line its default entry gets. The files that exist say what
/// could boot; the running line says what did (GRUB puts `BOOT_IMAGE=` there, systemd-boot
/// does not), so a file nothing reads is never the one edited.
pub fn read(root: &HostRoot) -> Boot {
    let unknown = |why: String| Boot::Unknown { why };
    let grub_booted = running(root).map(|r| r.iter().any(|w| w.starts_with("BOOT_IMAGE=")));
    let kernel_cmdline = root.present(KERNEL_CMDLINE);
    let grub_file = root.present(GRUB_DEFAULT);
    if root.present("run/ostree-booted") {
        return unknown(tr("this system boots an OSTree deployment: change its line with rpm-ostree kargs (or ostree admin kargs)"));
    }
    // Proxmox: proxmox-boot-tool keeps the ESPs; systemd-boot reads /etc/kernel/cmdline,
    // GRUB (legacy BIOS, Secure Boot) /etc/default/grub. Its docs: edit the one in use, then
    // `proxmox-boot-tool refresh`.
    let proxmox = root.present("etc/kernel/proxmox-boot-uuids");
    let proxmox_tool = program(root, &["/usr/sbin/proxmox-boot-tool"]);
    if proxmox && proxmox_tool.is_none() {
        return unknown(tr(
            "/etc/kernel/proxmox-boot-uuids is there but proxmox-boot-tool is not",
        ));
    }
    let refresh = || vec![proxmox_tool.clone().unwrap_or_default(), "refresh".into()];
    if proxmox && kernel_cmdline && grub_booted != Some(true) {
        return match read_text(root, Path::new(KERNEL_CMDLINE)) {
            Ok(t) => Boot::Known(BootConfig {
                arrangement: Arrangement::Proxmox,
                files: vec![KERNEL_CMDLINE.into()],
                line: t.split_whitespace().map(str::to_string).collect(),
                assignments: Vec::new(),
                regenerate: vec![refresh()],
            }),
            Err(why) => unknown(why),
        };
    }
    let kernel_install = program(root, &["/usr/bin/kernel-install", "/bin/kernel-install"]);
    let systemd_boot = kernel_cmdline && kernel_install.is_some() && bls_in_use(root);
    // A GRUB file left behind after a move to systemd-boot reads as nothing: the running
    // line says which boots.
    if grub_file && !(systemd_boot && grub_booted == Some(false)) {
        let (files, assignments, bls) = match read_grub(root) {
            Ok(r) => r,
            Err(why) => return unknown(why),
        };
        if bls {
            return unknown(tr("GRUB reads Boot Loader Specification entries here (GRUB_ENABLE_BLSCFG=true), whose options grubby changes: run grubby --update-kernel=ALL --args=… or --remove-args=… with the parameters a remedy names"));
        }
        let [linux, default] = grub_values(&assignments);
        let line: Vec<String> = linux.into_iter().chain(default).collect();
        let mut regenerate = if let Some(u) = program(root, &["/usr/sbin/update-grub"]) {
            vec![vec![u]]
        } else if let Some(m) = program(
            root,
            &["/usr/sbin/grub2-mkconfig", "/usr/bin/grub2-mkconfig"],
        ) {
            vec![vec![m, "-o".into(), "/boot/grub2/grub.cfg".into()]]
        } else if let Some(m) =
            program(root, &["/usr/sbin/grub-mkconfig", "/usr/bin/grub-mkconfig"])
        {
            vec![vec![m, "-o".into(), "/boot/grub/grub.cfg".into()]]
        } else {
            return unknown(tr("/etc/default/grub is there, but none of update-grub, grub-mkconfig or grub2-mkconfig is installed to carry a change to the boot loader"));
        };
        if proxmox {
            regenerate.push(refresh());
        }
        return Boot::Known(BootConfig {
            arrangement: Arrangement::Grub,
            files,
            line,
            assignments,
            regenerate,
        });
    }
    if kernel_cmdline {
        let Some(tool) = kernel_install else {
            return unknown(tr("/etc/kernel/cmdline is there but kernel-install, which writes it into the boot entries, is not"));
        };
        if !systemd_boot {
            return unknown(tr("/etc/kernel/cmdline is there, but no Boot Loader Specification entries are in use (a unified kernel image carries its own line: rebuild it with your initramfs tool)"));
        }
        let kernels = installed_kernels(root);
        if kernels.is_empty() {
            return unknown(tr("/etc/kernel/cmdline is there, but no installed kernel image was found to write an entry for"));
        }
        return match read_text(root, Path::new(KERNEL_CMDLINE)) {
            Ok(t) => Boot::Known(BootConfig {
                arrangement: Arrangement::KernelInstall,
                files: vec![KERNEL_CMDLINE.into()],
                line: t.split_whitespace().map(str::to_string).collect(),
                assignments: Vec::new(),
                regenerate: kernels
                    .into_iter()
                    .map(|(release, image)| vec![tool.clone(), "add".into(), release, image])
                    .collect(),
            }),
            Err(why) => unknown(why),
        };
    }
    unknown(tr("no boot configuration Passage knows was found (GRUB's /etc/default/grub, /etc/kernel/cmdline)"))
}

impl BootConfig {
    /// The files' new contents after `edit`, as `(file, before, after)` for each file that
    /// changes; `before` is the text read now.
    pub fn edit_files(
        &self,
        root: &HostRoot,
        edit: &Edit,
    ) -> Result<Vec<(PathBuf, String, String)>, String> {
        edit.check()?;
        match self.arrangement {
            Arrangement::KernelInstall | Arrangement::Proxmox => {
                let f = &self.files[0];
                let before = read_text(root, f)?;
                let words: Vec<String> = before.split_whitespace().map(str::to_string).collect();
                let after = edit.apply(&words);
                if after == words {
                    return Ok(Vec::new());
                }
                Ok(vec![(f.clone(), before, format!("{}\n", after.join(" ")))])
            }
            Arrangement::Grub => self.edit_grub(root, edit),
        }
    }

    fn edit_grub(
        &self,
        root: &HostRoot,
        edit: &Edit,
    ) -> Result<Vec<(PathBuf, String, String)>, String> {
        let mut texts: Vec<(PathBuf, String, Vec<String>)> = Vec::new();
        for f in &self.files {
            let t = read_text(root, f)?;
            let lines = t.lines().map(str::to_string).collect();
            texts.push((f.clone(), t, lines));
        }
        // Taken away wherever it is set; added once (a word the line has already is not added
        // again) to the last assignment of GRUB_CMDLINE_LINUX_DEFAULT — the one that decides
        // its value — or to a new line at the end of /etc/default/grub.
        let kept_line: Vec<String> = self
            .line
            .iter()
            .filter(|w| !edit.drops(w))
            .cloned()
            .collect();
        let adds: Vec<&String> = edit.add.iter().filter(|w| !kept_line.contains(w)).collect();
        let last_add = self
            .assignments
            .iter()
            .rposition(|a| a.variable == GRUB_ADD_TO);
        for (i, a) in self.assignments.iter().enumerate() {
            let mut words: Vec<String> =
                a.words.iter().filter(|w| !edit.drops(w)).cloned().collect();
            if Some(i) == last_add {
                for w in &adds {
                    if !words.contains(w) {
                        words.push((*w).clone());
                    }
                }
            }
            if words == a.words {
                continue;
            }
            let Some((_, _, lines)) = texts.iter_mut().find(|(f, _, _)| *f == a.file) else {
                continue;
            };
            let value = if a.appends {
                format!("${} {}", a.variable, words.join(" "))
                    .trim_end()
                    .to_string()
            } else {
                words.join(" ")
            };
            // Written as it was: single quotes stay single, a bare word gets double quotes
            // only when it becomes several.
            let quoted = match a.quote {
                Quote::Single => format!("'{value}'"),
                Quote::None if words.len() <= 1 && !a.appends => value,
                _ => format!("\"{value}\""),
            };
            lines[a.line] = format!("{}{}={quoted}{}", a.prefix, a.variable, a.rest);
        }
        if last_add.is_none() && !adds.is_empty() {
            let Some((_, _, lines)) = texts
                .iter_mut()
                .find(|(f, _, _)| f == Path::new(GRUB_DEFAULT))
            else {
                return Err(tr("/etc/default/grub cannot be read"));
            };
            let words: Vec<&str> = adds.iter().map(|w| w.as_str()).collect();
            lines.push(format!("{GRUB_ADD_TO}=\"{}\"", words.join(" ")));
        }
        Ok(texts
            .into_iter()
            .filter_map(|(f, before, lines)| {
                let mut after = lines.join("\n");
                if before.ends_with('\n') || before.is_empty() {
                    after.push('\n');
                }
                (after != before).then_some((f, before, after))
            })
            .collect())
    }

    /// The commands that carry a change to the boot loader, in order.
    pub fn commands(&self, _edit: &Edit) -> Vec<Vec<String>> {
        self.regenerate.clone()
    }
}

/// The words the running kernel was started with.
pub fn running(root: &HostRoot) -> Option<Vec<String>> {
    root.read_string("proc/cmdline")
        .ok()
        .map(|s| s.split_whitespace().map(str::to_string).collect())
}

/// What the configured line adds to the running one and lacks of it, ignoring what a boot
/// loader puts there by itself (`BOOT_IMAGE=`, `initrd=`, the root device's words are
/// configured in both places or in neither).
pub fn difference(configured: &[String], running: &[String]) -> (Vec<String>, Vec<String>) {
    // GRUB puts BOOT_IMAGE=, root= and ro there itself (and Ubuntu's 10_linux vt.handoff=);
    // kernel-install adds systemd.machine_id= to the entries it writes; EFI stubs and loaders
    // add initrd=.
    let loader = |w: &str| {
        matches!(
            key(w),
            "BOOT_IMAGE"
                | "initrd"
                | "root"
                | "ro"
                | "rw"
                | "rootflags"
                | "rootfstype"
                | "systemd.machine_id"
                | "vt.handoff"
        )
    };
    let more = configured
        .iter()
        .filter(|w| !loader(w) && !running.contains(w))
        .cloned()
        .collect();
    let less = running
        .iter()
        .filter(|w| !loader(w) && !configured.contains(w))
        .cloned()
        .collect();
    (more, less)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn edits_replace_values_of_the_same_key() {
        let e = Edit {
            add: words("intel_iommu=on"),
            remove: vec![],
        };
        assert_eq!(
            e.apply(&words("quiet intel_iommu=off splash")),
            words("quiet splash intel_iommu=on")
        );
        assert_eq!(
            e.inverse(&words("quiet intel_iommu=off splash")),
            Edit {
                add: words("intel_iommu=off"),
                remove: words("intel_iommu=on")
            }
        );
        let r = Edit {
            add: vec![],
            remove: words("vfio-pci.ids"),
        };
        assert_eq!(
            r.apply(&words("quiet vfio-pci.ids=10de:1b80,10de:10f0")),
            words("quiet")
        );
        assert!(Edit {
            add: words("a;reboot"),
            remove: vec![]
        }
        .check()
        .is_err());
        assert!(Edit {
            add: vec!["$(x)".into()],
            remove: vec![]
        }
        .check()
        .is_err());
    }

    #[test]
    fn grub_lines_are_parsed_as_the_shell_reads_them() {
        let p =
            |l: &str| parse_assignment(l).map(|o| o.map(|p| (p.name, p.words, p.appends, p.quote)));
        assert_eq!(
            p("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\""),
            Ok(Some((
                "GRUB_CMDLINE_LINUX_DEFAULT".into(),
                words("quiet splash"),
                false,
                Quote::Double
            )))
        );
        assert_eq!(
            p("GRUB_CMDLINE_LINUX='a b' # why"),
            Ok(Some((
                "GRUB_CMDLINE_LINUX".into(),
                words("a b"),
                false,
                Quote::Single
            )))
        );
        assert_eq!(
            p("export\tGRUB_CMDLINE_LINUX=quiet"),
            Ok(Some((
                "GRUB_CMDLINE_LINUX".into(),
                words("quiet"),
                false,
                Quote::None
            )))
        );
        assert_eq!(
            p("GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt\""),
            Ok(Some((
                "GRUB_CMDLINE_LINUX_DEFAULT".into(),
                words("iommu=pt"),
                true,
                Quote::Double
            )))
        );
        assert_eq!(p("GRUB_TIMEOUT=5"), Ok(None));
        for odd in [
            "GRUB_CMDLINE_LINUX=\"$(cat /x)\"",
            "GRUB_CMDLINE_LINUX=\"$OTHER a\"",
            "GRUB_CMDLINE_LINUX=\"a",
            "GRUB_CMDLINE_LINUX=\"a\"; reboot",
            "GRUB_CMDLINE_LINUX=\"quiet\"#x",
            "GRUB_TIMEOUT=5; GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
            "[ -e /x ] || GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX a\"",
            "    x86_64) GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\" ;;",
            "GRUB_CMDLINE_LINUX='quiet $foo'",
        ] {
            assert!(p(odd).is_err(), "{odd}");
        }
    }

    #[test]
    fn the_difference_leaves_out_what_the_loader_adds() {
        let (more, less) = difference(
            &words("root=UUID=1 ro quiet intel_iommu=on"),
            &words("BOOT_IMAGE=/vmlinuz-6.1 root=UUID=1 ro quiet"),
        );
        assert_eq!(more, words("intel_iommu=on"));
        assert!(less.is_empty());
    }
}
