//! The command lines of Passage's three programs, as clap definitions in one place, so that the
//! man pages and shell completions are made from the very definitions the programs parse
//! (`passagectl generate-docs DIR`, which `make` runs; [`generate_docs`]).
//!
//! Words are parsed here only into plain values; each program turns them into typed values
//! (`GroupId`, `PciAddress`, …) with errors in words.

use std::io;
use std::path::{Path, PathBuf};

/// `passagectl`, the command line.
pub mod ctl {
    use crate::{export, plan};
    use clap::{Parser, Subcommand};
    use std::path::PathBuf;

    #[derive(Parser, Debug)]
    #[command(
        name = "passagectl",
        version,
        about = "Give host PCI devices to virtual machines, one IOMMU group at a time"
    )]
    pub struct Cli {
        /// Read a recorded or prepared host root instead of / (also: PASSAGE_ROOT). Repeat
        /// for `cluster export`, one recording per node (all on one side of the command).
        #[arg(long, global = true, value_name = "DIR", conflicts_with = "demo")]
        pub root: Vec<PathBuf>,
        /// Use a bundled demo host: the workstation with a GPU to give away (the default), or
        /// `arm64` / `ppc64le`, machines recorded on those architectures' real kernels.
        #[arg(
            long,
            global = true,
            value_name = "VARIANT",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "workstation"
        )]
        pub demo: Option<crate::demo::DemoHost>,
        /// Work on another machine: its helper (and libvirt) over
        /// `ssh -xT [USER@]HOST systemd-stdio-bridge`, authorized by that machine's polkit.
        /// PASSAGE_SSH names another ssh program. Repeat for `cluster export` (all on one side
        /// of the command: clap keeps only the values given after it when both sides have some).
        #[arg(
            short = 'H',
            long = "host",
            global = true,
            value_name = "[USER@]HOST",
            conflicts_with_all = ["root", "demo"]
        )]
        pub host: Vec<crate::address::Remote>,
        #[command(subcommand)]
        pub command: Command,
    }

    impl Cli {
        /// The one recorded root named (`None`: none); more than one is only for
        /// `cluster export`.
        pub fn one_root(&self) -> Result<Option<&std::path::Path>, String> {
            match self.root.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(one)),
                _ => Err(crate::i18n::tr(
                    "--root names one host; more than one is for “cluster export”",
                )),
            }
        }

        /// The one other machine named with `-H` (`None`: this one); more than one is only for
        /// `cluster export`.
        pub fn remote(&self) -> Result<Option<&crate::address::Remote>, String> {
            // clap checks the conflict only where both are given on one side of the command.
            if !self.host.is_empty() && (self.demo.is_some() || !self.root.is_empty()) {
                return Err(crate::i18n::tr(
                    "-H cannot be used with --root or --demo: it reads another machine, they read this one",
                ));
            }
            match self.host.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(one)),
                _ => Err(crate::i18n::tr(
                    "-H names one machine; more than one is for “cluster export”",
                )),
            }
        }
    }

    #[derive(Subcommand, Debug)]
    pub enum ClusterAction {
        /// One mapping per device model with an entry per node: Proxmox VE resource mappings
        /// (proxmox-mapping), KubeVirt's permittedHostDevices and node labels (kubevirt), Nova's
        /// [pci] device_spec and alias per compute node (nova). By default the devices each node
        /// has on vfio-pci; --device picks models instead.
        Export {
            #[arg(long, value_name = "F", value_parser = ["proxmox-mapping", "kubevirt", "nova"])]
            format: String,
            /// Only devices of this model, VENDOR:DEVICE in hex (repeatable), on vfio-pci or not.
            #[arg(long = "device", value_name = "VENDOR:DEVICE")]
            devices: Vec<String>,
            /// Write to FILE instead of standard output.
            #[arg(long, short, value_name = "FILE")]
            output: Option<PathBuf>,
        },
    }

    #[derive(Subcommand, Debug)]
    pub enum Command {
        /// List IOMMU groups, their devices and whether they can be given to a guest.
        List {
            /// Machine-readable output (schema in docs/JSON.md).
            #[arg(long)]
            json: bool,
        },
        /// Explain one device (DDDD:BB:SS.F) or group (N): why it is in its state, what to do.
        Explain {
            /// A PCI address such as 0000:01:00.0, or a group number.
            target: String,
            #[arg(long)]
            json: bool,
        },
        /// What stands between this host and pass-through: the IOMMU in the firmware and the
        /// kernel, vfio-pci, iommufd, devices whose reset fails; each with its remedy. Exit 0
        /// when nothing blocks, 1 when something does.
        Doctor {
            #[arg(long)]
            json: bool,
        },
        /// Carry out the remedy of a finding of `doctor` that names `passagectl fix`: a kernel
        /// parameter added to or taken from the boot configuration (GRUB, kernel-install,
        /// proxmox-boot-tool), through the helper, with an administrator's password. Recorded,
        /// so `unfix` takes exactly it back; it takes effect at the next boot, and `doctor`
        /// then says whether it took.
        Fix {
            /// The finding's code, as doctor prints it (iommu-not-enabled, boot-framebuffer, …).
            code: String,
            /// The device a finding is about (boot-framebuffer), as doctor names it.
            device: Option<String>,
            /// Show the files' change and the commands, change nothing (works on --root too).
            #[arg(long)]
            dry_run: bool,
        },
        /// Take back what `fix CODE [DEVICE]` changed, through the helper.
        Unfix {
            code: String,
            device: Option<String>,
        },
        /// What a guest's reboot does to a group's devices, tried while no guest has them: the
        /// group claimed for vfio-pci, each member reset as the kernel resets it for VFIO, checked
        /// to answer as the same device, and given back to its drivers; the result kept per
        /// model and kernel. Through the helper. Exit 1 when a member does not survive it.
        RehearseReset { group: String },
        /// Give an SR-IOV physical function COUNT virtual functions (0: none), through the
        /// helper: created now by its driver, and again at every boot when the driver binds it
        /// (a udev rule). Each VF is a group card of its own. Refused while a VF is on vfio-pci.
        Vfs {
            /// The physical function's PCI address.
            device: String,
            count: u32,
        },
        /// The size a resizable BAR gets whenever Passage claims the device from its host driver
        /// (written while no driver holds it, before vfio-pci; the size it had goes back at
        /// release; a group the boot's udev rule gives to vfio-pci keeps its size): for a guest
        /// whose 64-bit PCI window is smaller than the BAR, or a guest driver that fails on a
        /// BAR larger than it expects. Through the helper. SIZE in MiB (256), or with GiB
        /// (8GiB); `none` to leave the BAR as it is again.
        BarSize {
            /// The device's PCI address.
            device: String,
            /// The BAR (0–5): `passagectl doctor` names the resizable ones.
            bar: u8,
            size: String,
        },
        /// Draw the PCI tree with a box around each IOMMU group, as SVG: the root complex, ports
        /// and bridges, which port does not isolate what is below it; for bug reports and forums.
        Draw {
            /// Only this group (repeatable), with the ports and bridges above it and their groups.
            #[arg(long, value_name = "N")]
            group: Vec<String>,
            /// Draw every SR-IOV virtual function (by default a PF's VFs fold into a count).
            #[arg(long)]
            all_vfs: bool,
            /// The plan whose guests are named on the boxes (default: ~/.config/passage/plan.json;
            /// with --demo, the demo plan).
            #[arg(long, value_name = "FILE")]
            plan: Option<PathBuf>,
            /// Write to FILE instead of standard output.
            #[arg(long, short, value_name = "FILE")]
            output: Option<PathBuf>,
        },
        /// Record this host's PCI facts into DIR, for bug reports; `--root DIR` reads them back.
        Record {
            /// Directory to create (must not exist or be empty).
            out: PathBuf,
        },
        /// Check that QEMU can use GROUP, by QEMU's own steps; exit 0 usable, 1 not usable, 2 error.
        Verify {
            /// An IOMMU group number.
            group: String,
            #[arg(long)]
            json: bool,
        },
        /// Give a whole group to vfio-pci, through the helper (polkit asks for a password).
        Claim {
            group: String,
            /// Claim even a group the host needs (its root disk, console or network).
            #[arg(long)]
            force: bool,
        },
        /// Give a claimed group back to the host drivers it was taken from, through the helper.
        Release { group: String },
        /// Claim GROUP at every boot (on), or stop (off), through the helper.
        Persist {
            group: String,
            /// on or off
            #[arg(value_parser = ["on", "off"])]
            state: String,
        },
        /// The groups the helper holds, the groups claimed at every boot, and any operation it
        /// is still undoing.
        Status {
            #[arg(long)]
            json: bool,
        },
        /// Build and check an assignment plan: which guest gets which groups, and how.
        Plan {
            /// The plan file (default: ~/.config/passage/plan.json; with --demo, the demo plan).
            #[arg(long, global = true, value_name = "FILE")]
            plan: Option<PathBuf>,
            #[command(subcommand)]
            action: PlanAction,
        },
        /// Write a guest's VM configuration from a plan.
        Export {
            /// The plan file (default: ~/.config/passage/plan.json; with --demo, the demo plan).
            #[arg(long, value_name = "FILE")]
            plan: Option<PathBuf>,
            /// The guest to export (default: the plan's first guest holding groups).
            #[arg(long, value_name = "NAME")]
            guest: Option<String>,
            /// What to write: libvirt (<hostdev> elements), libvirt-domain (a whole domain),
            /// qemu (-device arguments), proxmox (hostpciN lines), cloud-hypervisor, crosvm,
            /// kubevirt (YAML), nova (pci settings) or json (the resolved plan).
            #[arg(long, value_name = "F", value_parser = formats())]
            format: String,
            /// QEMU: the iommufd form (QEMU 9.0+, a kernel with iommufd and VFIO's device
            /// files). Without this or --no-iommufd the form follows this host: iommufd where
            /// its kernel has both and its QEMU ($PASSAGE_QEMU, else qemu-system-ARCH) is 9.0+.
            #[arg(long, conflicts_with = "no_iommufd")]
            iommufd: bool,
            /// QEMU: the group form (/dev/vfio/N), whatever this host has.
            #[arg(long)]
            no_iommufd: bool,
            /// Write to FILE instead of standard output.
            #[arg(long, short, value_name = "FILE")]
            output: Option<PathBuf>,
        },
        /// Local guest profiles (for plain QEMU, crosvm, cloud-hypervisor, Proxmox, KubeVirt, Nova).
        Guests {
            #[command(subcommand)]
            action: Option<GuestsAction>,
            #[arg(long)]
            json: bool,
        },
        /// libvirt's qemu hook (installed as /etc/libvirt/hooks/qemu.d/passage): claims the groups
        /// of guests started on demand, gives them back when they stop. Domain XML on stdin.
        #[command(hide = true)]
        HookQemu {
            domain: String,
            op: String,
            subop: String,
            #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
            extra: Vec<String>,
        },
        /// Many hosts at once: export a cluster's device mappings from each node's own
        /// reading (live with -H, repeated, or recordings with --root, repeated).
        Cluster {
            #[command(subcommand)]
            action: ClusterAction,
        },
        /// Print device events (add, remove, bind, unbind, change) as they happen.
        Monitor {
            /// One JSON object per line.
            #[arg(long)]
            json: bool,
            /// Stop after this many events.
            #[arg(long, value_name = "N")]
            max_events: Option<u64>,
        },
        /// Write the man pages and shell completions of passagectl, passage and passage-helper
        /// into DIR (`man/`, `completions/`); `make` runs it.
        #[command(hide = true)]
        GenerateDocs {
            /// Directory to write into (created if missing).
            dir: PathBuf,
        },
    }

    /// The words `--format` takes: the library's formats, by their contract names.
    pub fn formats() -> clap::builder::PossibleValuesParser {
        clap::builder::PossibleValuesParser::new(export::Format::ALL.map(|f| f.as_str()))
    }

    /// The words `--vmm` takes.
    pub fn vmms() -> clap::builder::PossibleValuesParser {
        clap::builder::PossibleValuesParser::new(plan::Vmm::ALL.map(|v| v.as_str()))
    }

    #[derive(Subcommand, Debug)]
    pub enum PlanAction {
        /// The plan: guests, their groups and devices with guest addresses, and its problems.
        Show {
            #[arg(long)]
            json: bool,
        },
        /// Check the plan against this host; exit 0 when it can be applied, 1 when not.
        Check {
            #[arg(long)]
            json: bool,
        },
        /// Give a whole group to a guest (a guest from the plan, a local profile or libvirt).
        Assign {
            group: String,
            guest: String,
            /// Even a group the host needs (its root disk, console or network).
            #[arg(long)]
            force: bool,
        },
        /// Take a group out of the plan.
        Unassign { group: String },
        /// Show a device to its guest, or hide it (it stays claimed with its group).
        Visible {
            address: String,
            #[arg(value_parser = ["on", "off"])]
            state: String,
        },
        /// Choose a device's guest address (BB:SS.F), or let Passage place it (auto).
        Address { address: String, at: String },
        /// Expose the device's option ROM (on) or not (off).
        Rombar {
            address: String,
            #[arg(value_parser = ["on", "off"])]
            state: String,
        },
        /// QEMU's legacy VGA for a GPU that is the guest's primary display.
        XVga {
            address: String,
            #[arg(value_parser = ["on", "off"])]
            state: String,
        },
        /// When a guest's groups are claimed: kept (now, until released) or on-start (libvirt hook).
        Lifecycle {
            guest: String,
            #[arg(value_parser = ["kept", "on-start"])]
            lifecycle: String,
        },
        /// Take a guest out of the plan (its groups stay with the host).
        RemoveGuest { guest: String },
        /// Find planned cards that moved (another slot, a renumbered bus) by their ids and move
        /// their groups in the plan there, keeping every choice made for them; identical twins
        /// are never guessed.
        Remap {
            /// Only say what would move.
            #[arg(long)]
            dry_run: bool,
        },
        /// Carry the plan out on this host: claim the groups guests keep (through the helper; polkit
        /// asks for the password) and write libvirt guests' definitions. All or nothing: a failure
        /// gives back what this run claimed.
        Apply {
            /// Only this guest (default: every guest holding groups).
            #[arg(long, value_name = "NAME")]
            guest: Option<String>,
        },
    }

    #[derive(Subcommand, Debug)]
    pub enum GuestsAction {
        /// Add a local guest profile.
        Add {
            name: String,
            #[arg(long, value_parser = vmms(), default_value = "qemu")]
            vmm: String,
            /// q35 (PCIe root ports) or pc (one flat bus), or a versioned name.
            #[arg(long, default_value = "q35")]
            machine: String,
            /// The guest's memory (16G, 512M): checked against the locked-memory limit its VMM
            /// runs under, since pass-through pins all of it.
            #[arg(long, value_name = "SIZE")]
            memory: Option<String>,
        },
        /// Remove a local guest profile.
        Remove { name: String },
    }
}

/// `passage`, the desktop app.
pub mod app {
    use clap::Parser;
    use std::path::PathBuf;

    #[derive(Parser, Debug)]
    #[command(
        name = "passage",
        version,
        about = "Give host PCI devices to virtual machines, one IOMMU group at a time",
        long_about = "The Passage app: this host's IOMMU groups as cards you drag onto guests \
            (libvirt domains and local guest profiles), with the reasons a group cannot be \
            given away and what to do. Apply claims the planned groups through passage-helper."
    )]
    pub struct Cli {
        /// Open a bundled demo host and its guests: the workstation with a GPU to give away
        /// (the default), or `arm64` / `ppc64le`, recorded on those architectures' kernels.
        #[arg(
            long,
            value_name = "VARIANT",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "workstation",
            conflicts_with_all = ["root", "host"]
        )]
        pub demo: Option<crate::demo::DemoHost>,
        /// Open another machine: its helper and libvirt over
        /// `ssh -xT [USER@]HOST systemd-stdio-bridge` (PASSAGE_SSH names another ssh), its own
        /// plan kept under ~/.config/passage/hosts/HOST/.
        #[arg(
            short = 'H',
            long = "host",
            value_name = "[USER@]HOST",
            conflicts_with = "root"
        )]
        pub host: Option<crate::address::Remote>,
        /// Read a recorded host root instead of / (also: PASSAGE_ROOT).
        #[arg(long, value_name = "DIR")]
        pub root: Option<PathBuf>,
        /// The plan file (default: the one opened last, else ~/.config/passage/plan.json; with
        /// --demo, kept in memory).
        #[arg(long, value_name = "FILE")]
        pub plan: Option<PathBuf>,
    }
}

/// `passage-helper`, the privileged service.
pub mod helper {
    use crate::names;
    use clap::Parser;
    use std::path::PathBuf;

    #[derive(Parser, Debug)]
    #[command(
        name = "passage-helper",
        version,
        about = "Passage's privileged service: claims and releases IOMMU groups for vfio-pci",
        long_about = "The D-Bus system service io.github.passage.Helper1, started by D-Bus \
            activation. Every change it makes is authorized by polkit for the caller and \
            carried out as a journaled transaction over a whole IOMMU group. Run by hand (as \
            root) it carries out one transaction without D-Bus and exits."
    )]
    pub struct Args {
        /// Host root. Anything but / is a test tree, driven by the fake kernel (never the real one).
        #[arg(long, default_value = "/")]
        pub root: PathBuf,
        /// Where journals and claim records live.
        #[arg(long, default_value = names::STATE_DIR)]
        pub state_dir: PathBuf,
        /// How long a password prompt may stay unanswered before the request ends as
        /// dismissed (it holds nothing meanwhile).
        #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
        pub auth_timeout: u64,
        /// Claim GROUP now, without D-Bus (as root), then exit.
        #[arg(long, value_name = "GROUP", conflicts_with_all = ["release", "replay"])]
        pub claim: Option<String>,
        /// With --claim: claim even a group the host needs.
        #[arg(long, requires = "claim")]
        pub force: bool,
        /// Release GROUP now, without D-Bus, then exit.
        #[arg(long, value_name = "GROUP", conflicts_with = "replay")]
        pub release: Option<String>,
        /// Undo unfinished operations (what the service does at start), then exit.
        #[arg(long)]
        pub replay: bool,
        /// At boot (passage-reclaim.service): claim every persisted group whose members are still
        /// where and what they were, then exit.
        #[arg(long, conflicts_with_all = ["claim", "release"])]
        pub reclaim: bool,
        /// Claim GROUP at every boot from now on (the udev rule, modprobe softdeps and the
        /// re-claim list), without D-Bus, then exit.
        #[arg(long, value_name = "GROUP", conflicts_with_all = ["claim", "release", "reclaim", "unpersist"])]
        pub persist: Option<String>,
        /// Stop claiming GROUP at boot, without D-Bus, then exit.
        #[arg(long, value_name = "GROUP", conflicts_with_all = ["claim", "release", "reclaim"])]
        pub unpersist: Option<String>,
        /// Rebuild the initramfs with the system's tool (update-initramfs or dracut), so the
        /// persisted groups' modprobe softdeps apply to drivers loaded from it, then exit
        /// (what passage-initramfs.service runs).
        #[arg(long, conflicts_with_all = ["claim", "release", "reclaim", "persist", "unpersist", "replay"])]
        pub regenerate_initramfs: bool,
        /// Rehearse GROUP's reset (claim, reset each member, give back), without D-Bus, then exit.
        #[arg(long, value_name = "GROUP", conflicts_with_all = ["claim", "release", "reclaim", "persist", "unpersist"])]
        pub rehearse_reset: Option<String>,
        /// Give the SR-IOV physical function ADDRESS COUNT virtual functions (0: none), now and
        /// at every boot (a udev rule), without D-Bus, then exit.
        #[arg(long, value_name = "ADDRESS=COUNT", conflicts_with_all = ["claim", "release", "reclaim", "persist", "unpersist"])]
        pub set_vfs: Option<String>,
        /// Carry out the kernel command line change the service left in the state directory
        /// (what passage-boot-line.service runs), then exit.
        #[arg(long, conflicts_with_all = ["claim", "release", "reclaim", "persist", "unpersist", "replay", "regenerate_initramfs"])]
        pub boot_line_request: bool,
    }
}

/// The date of this version's release, printed in the man pages' headers; the AppStream
/// metainfo's release of the same version carries the same date (tests/data_files.rs).
pub const RELEASE_DATE: &str = "2026-12-02";

/// The shells completions are written for, and where each looks for them.
const SHELLS: [(clap_complete::Shell, &str); 3] = [
    (clap_complete::Shell::Bash, "bash"),
    (clap_complete::Shell::Zsh, "zsh"),
    (clap_complete::Shell::Fish, "fish"),
];

/// Writes into `dir`: `man/` with passagectl(1) and a page per subcommand
/// (`passagectl-plan-assign.1`, as git and cargo do), passage(1) and passage-helper(8); and
/// `completions/{bash,zsh,fish}/` for passagectl and passage. Returns the files written.
pub fn generate_docs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    let ctl = ctl::Cli::command();
    let app = app::Cli::command();
    let helper = helper::Args::command();
    let mut written = Vec::new();
    man_pages(&ctl, "1", &man, &mut written)?;
    man_pages(&app, "1", &man, &mut written)?;
    man_pages(&helper, "8", &man, &mut written)?;
    for (shell, sub) in SHELLS {
        let d = dir.join("completions").join(sub);
        std::fs::create_dir_all(&d)?;
        for cmd in [&ctl, &app] {
            let mut cmd = cmd.clone();
            let name = cmd.get_name().to_string();
            written.push(clap_complete::generate_to(shell, &mut cmd, name, &d)?);
        }
    }
    Ok(written)
}

/// One page for `cmd` and one for every visible subcommand below it, named by their path.
fn man_pages(
    cmd: &clap::Command,
    section: &'static str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let mut cmd = cmd.clone();
    cmd.build();
    page(&cmd, cmd.get_name(), section, dir, written)
}

fn page(
    cmd: &clap::Command,
    name: &str,
    section: &'static str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let named = cmd.clone().name(name.to_string());
    let path = dir.join(format!("{name}.{section}"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(named)
        .section(section)
        .date(RELEASE_DATE)
        .source(format!("Passage {}", env!("CARGO_PKG_VERSION")))
        .manual("Passage")
        .render(&mut buf)?;
    std::fs::write(&path, buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        page(
            sub,
            &format!("{name}-{}", sub.get_name()),
            section,
            dir,
            written,
        )?;
    }
    Ok(())
}
