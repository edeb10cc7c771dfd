//! The kernel command line as this system's boot configuration says it: where it lives (GRUB's
//! `/etc/default/grub`, kernel-install's and Proxmox's `/etc/kernel/cmdline`), the command that
//! carries a change to the boot loader, and the exact edit a remedy names — computed here,
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
    /// GRUB reading Boot Loader Specification entries (Fedora, RHEL; `GRUB_ENABLE_BLSCFG=true`):
    /// the entries carry the options, changed by grubby; `/etc/default/grub` for new kernels.
    GrubBls,
    /// systemd-boot or another BLS loader through kernel-install: `/etc/kernel/cmdline`.
    KernelInstall,
    /// Proxmox VE booting through proxmox-boot-tool (ZFS root, systemd-boot): `/etc/kernel/cmdline`.
    Proxmox,
}

impl Arrangement {
    pub fn describe(self) -> &'static str {
        match self {
            Arrangement::Grub => "GRUB",
            Arrangement::GrubBls => "GRUB with BLS entries (grubby)",
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
    /// arguments, run in this order; `$ADD`/`$REMOVE` words are filled in by [`Edit::commands`].
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

/// A change to the command line: words to add (each replaces any other value of its key) and
/// words or keys to take away (`vfio-pci.ids` takes `vfio-pci.ids=…` of any value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Edit {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

fn key(word: &str) -> &str {
    word.split_once('=').map_or(word, |(k, _)| k)
}

/// A word Passage may write into a boot file: kernel parameters made of what they are made of,
/// nothing a shell or a boot loader would read as something else.
pub fn valid_word(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 256
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.,:=/+-".contains(c))
}

impl Edit {
    /// Whether `word` is one this edit takes away (or replaces with one of its own).
    fn drops(&self, word: &str) -> bool {
        self.remove
            .iter()
            .any(|r| r == word || (!r.contains('=') && key(word) == r))
            || self
                .add
                .iter()
                .any(|a| a.contains('=') && key(a) == key(word) && a != word)
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

/// Parses one `NAME=value` line of a GRUB defaults file: `Ok(None)` for a line that sets none
/// of the command-line variables; `Err` for one that sets one in a way this module does not
/// edit (shell it would have to run).
fn parse_assignment(line: &str) -> Result<Option<(String, Vec<String>, bool)>, String> {
    let t = line.trim();
    let t = t.strip_prefix("export ").map_or(t, str::trim_start);
    let Some((name, value)) = t.split_once('=') else {
        return Ok(None);
    };
    if !GRUB_VARS.contains(&name) {
        return Ok(None);
    }
    // A trailing comment after the value (`X="…" # why`) is the shell's too.
    let (inner, rest) = if let Some(v) = value.strip_prefix('"') {
        let end = v
            .find('"')
            .ok_or_else(|| tr("the quote is not closed on its line"))?;
        let inner = &v[..end];
        if inner.contains(['`', '\\']) {
            return Err(tr("it runs shell (a backquote or a backslash)"));
        }
        (inner, &v[end + 1..])
    } else if let Some(v) = value.strip_prefix('\'') {
        let end = v
            .find('\'')
            .ok_or_else(|| tr("the quote is not closed on its line"))?;
        (&v[..end], &v[end + 1..])
    } else {
        if value
            .split('#')
            .next()
            .unwrap_or("")
            .contains(['$', '`', '\\', '('])
        {
            return Err(tr("its value is built from other variables or commands"));
        }
        let end = value.find(char::is_whitespace).unwrap_or(value.len());
        (&value[..end], &value[end..])
    };
    let rest = rest.trim();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return Err(tr("more follows the value on its line"));
    }
    let (appends, body) = match inner
        .strip_prefix(&format!("${name}"))
        .or_else(|| inner.strip_prefix(&format!("${{{name}}}")))
    {
        Some(b) if b.is_empty() || b.starts_with(' ') => (true, b),
        _ => (false, inner),
    };
    if value.starts_with('"') && body.contains('$') {
        return Err(tr("its value is built from other variables or commands"));
    }
    Ok(Some((
        name.to_string(),
        body.split_whitespace().map(str::to_string).collect(),
        appends,
    )))
}

/// The GRUB defaults files in the order grub-mkconfig sources them.
fn grub_files(root: &HostRoot) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(GRUB_DEFAULT)];
    if let Ok(names) = root.read_dir(GRUB_DIR) {
        for n in names {
            let n = n.to_string_lossy().into_owned();
            if n.ends_with(".cfg") {
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

/// Reads GRUB's settings: every assignment of the two variables, in order.
fn read_grub(root: &HostRoot) -> Result<(Vec<PathBuf>, Vec<Assignment>, bool), String> {
    let files = grub_files(root);
    let mut assignments = Vec::new();
    let mut bls = false;
    for f in &files {
        let text = read_text(root, f)?;
        for (i, l) in text.lines().enumerate() {
            if l.trim_start().starts_with('#') {
                continue;
            }
            if l.trim_end().ends_with('\\') && GRUB_VARS.iter().any(|v| l.contains(v)) {
                return Err(trf(
                    "/{file} line {line} continues on the next line",
                    &[
                        ("file", &f.display().to_string()),
                        ("line", &(i + 1).to_string()),
                    ],
                ));
            }
            if let Some(v) = l.trim().strip_prefix("GRUB_ENABLE_BLSCFG=") {
                bls = v.trim_matches(['"', '\'']) == "true";
            }
            match parse_assignment(l) {
                Ok(Some((variable, words, appends))) => assignments.push(Assignment {
                    file: f.clone(),
                    line: i,
                    variable,
                    words,
                    appends,
                }),
                Ok(None) => {}
                Err(why) => {
                    return Err(trf(
                        "/{file} line {line} sets the command line in a way Passage does not edit: {why}",
                        &[
                            ("file", &f.display().to_string()),
                            ("line", &(i + 1).to_string()),
                            ("why", &why),
                        ],
                    ))
                }
            }
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
/// newest name last, as `(release, image)`.
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

/// How this root boots and the line its default entry gets.
pub fn read(root: &HostRoot) -> Boot {
    let unknown = |why: String| Boot::Unknown { why };
    let kernel_cmdline = root.present(KERNEL_CMDLINE);
    // Proxmox first: its hosts may also have GRUB's files, unused when proxmox-boot-tool boots.
    if kernel_cmdline && root.present("etc/kernel/proxmox-boot-uuids") {
        let Some(tool) = program(root, &["/usr/sbin/proxmox-boot-tool"]) else {
            return unknown(tr(
                "/etc/kernel/proxmox-boot-uuids is there but proxmox-boot-tool is not",
            ));
        };
        return match read_text(root, Path::new(KERNEL_CMDLINE)) {
            Ok(t) => Boot::Known(BootConfig {
                arrangement: Arrangement::Proxmox,
                files: vec![KERNEL_CMDLINE.into()],
                line: t.split_whitespace().map(str::to_string).collect(),
                assignments: Vec::new(),
                regenerate: vec![vec![tool, "refresh".into()]],
            }),
            Err(why) => unknown(why),
        };
    }
    if root.present("run/ostree-booted") {
        return unknown(tr("this system boots an OSTree deployment: change its line with rpm-ostree kargs (or ostree admin kargs)"));
    }
    if root.present(GRUB_DEFAULT) {
        let (files, assignments, bls) = match read_grub(root) {
            Ok(r) => r,
            Err(why) => return unknown(why),
        };
        let [linux, default] = grub_values(&assignments);
        let line: Vec<String> = linux.into_iter().chain(default).collect();
        let (arrangement, regenerate) = if bls {
            match program(root, &["/usr/sbin/grubby", "/usr/bin/grubby"]) {
                Some(g) => (
                    Arrangement::GrubBls,
                    vec![vec![g, "--update-kernel=ALL".into(), "--args=$ADD".into(), "--remove-args=$REMOVE".into()]],
                ),
                None => return unknown(tr("GRUB reads BLS entries here (GRUB_ENABLE_BLSCFG=true) but grubby, which changes them, is not installed")),
            }
        } else if let Some(u) = program(root, &["/usr/sbin/update-grub"]) {
            (Arrangement::Grub, vec![vec![u]])
        } else if let Some(m) = program(
            root,
            &["/usr/sbin/grub2-mkconfig", "/usr/bin/grub2-mkconfig"],
        ) {
            (
                Arrangement::Grub,
                vec![vec![m, "-o".into(), "/boot/grub2/grub.cfg".into()]],
            )
        } else if let Some(m) =
            program(root, &["/usr/sbin/grub-mkconfig", "/usr/bin/grub-mkconfig"])
        {
            (
                Arrangement::Grub,
                vec![vec![m, "-o".into(), "/boot/grub/grub.cfg".into()]],
            )
        } else {
            return unknown(tr("/etc/default/grub is there, but none of update-grub, grub-mkconfig or grub2-mkconfig is installed to carry a change to the boot loader"));
        };
        return Boot::Known(BootConfig {
            arrangement,
            files,
            line,
            assignments,
            regenerate,
        });
    }
    if kernel_cmdline {
        let Some(tool) = program(root, &["/usr/bin/kernel-install", "/bin/kernel-install"]) else {
            return unknown(tr("/etc/kernel/cmdline is there but kernel-install, which writes it into the boot entries, is not"));
        };
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
            Arrangement::Grub | Arrangement::GrubBls => self.edit_grub(root, edit),
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
        // Taken away wherever it is set; added to the last assignment of the variable (the one
        // that decides its value), or to a new line at the end of /etc/default/grub.
        let takes_only = Edit {
            add: Vec::new(),
            remove: edit
                .remove
                .iter()
                .cloned()
                .chain(
                    edit.add
                        .iter()
                        .filter(|a| a.contains('='))
                        .map(|a| key(a).to_string()),
                )
                .collect(),
        };
        let last_add = self
            .assignments
            .iter()
            .rposition(|a| a.variable == GRUB_ADD_TO);
        for (i, a) in self.assignments.iter().enumerate() {
            let mut words: Vec<String> = a
                .words
                .iter()
                .filter(|w| !takes_only.drops(w) || edit.add.contains(w))
                .cloned()
                .collect();
            if Some(i) == last_add {
                for w in &edit.add {
                    if !words.contains(w) {
                        words.push(w.clone());
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
            let old = &lines[a.line];
            let indent: String = old.chars().take_while(|c| c.is_whitespace()).collect();
            let export = if old.trim_start().starts_with("export ") {
                "export "
            } else {
                ""
            };
            lines[a.line] = format!("{indent}{export}{}=\"{value}\"", a.variable);
        }
        if last_add.is_none() && !edit.add.is_empty() {
            let Some((_, _, lines)) = texts
                .iter_mut()
                .find(|(f, _, _)| f == Path::new(GRUB_DEFAULT))
            else {
                return Err(tr("/etc/default/grub cannot be read"));
            };
            lines.push(format!("{GRUB_ADD_TO}=\"{}\"", edit.add.join(" ")));
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

    /// The commands that carry `edit` to the boot loader, `$ADD`/`$REMOVE` filled in (a grubby
    /// argument with nothing to say is left out).
    pub fn commands(&self, edit: &Edit) -> Vec<Vec<String>> {
        self.regenerate
            .iter()
            .map(|cmd| {
                cmd.iter()
                    .filter_map(|a| match a.as_str() {
                        "--args=$ADD" => {
                            (!edit.add.is_empty()).then(|| format!("--args={}", edit.add.join(" ")))
                        }
                        // grubby replaces another value of an added key by itself.
                        "--remove-args=$REMOVE" => (!edit.remove.is_empty())
                            .then(|| format!("--remove-args={}", edit.remove.join(" "))),
                        _ => Some(a.clone()),
                    })
                    .collect()
            })
            .collect()
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
    // GRUB puts BOOT_IMAGE=, root= and ro there itself; kernel-install adds
    // systemd.machine_id= to the entries it writes; EFI stubs and loaders add initrd=.
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
        assert_eq!(
            parse_assignment("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\""),
            Ok(Some((
                "GRUB_CMDLINE_LINUX_DEFAULT".into(),
                words("quiet splash"),
                false
            )))
        );
        assert_eq!(
            parse_assignment("GRUB_CMDLINE_LINUX='a b' # why"),
            Ok(Some(("GRUB_CMDLINE_LINUX".into(), words("a b"), false)))
        );
        assert_eq!(
            parse_assignment("GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt\""),
            Ok(Some((
                "GRUB_CMDLINE_LINUX_DEFAULT".into(),
                words("iommu=pt"),
                true
            )))
        );
        assert_eq!(parse_assignment("GRUB_TIMEOUT=5"), Ok(None));
        assert!(parse_assignment("GRUB_CMDLINE_LINUX=\"$(cat /x)\"").is_err());
        assert!(parse_assignment("GRUB_CMDLINE_LINUX=\"$OTHER a\"").is_err());
        assert!(parse_assignment("GRUB_CMDLINE_LINUX=\"a").is_err());
        assert!(parse_assignment("GRUB_CMDLINE_LINUX=\"a\"; reboot").is_err());
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
