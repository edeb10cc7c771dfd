//! Every name something outside this code depends on, in one place (docs/CONTRACTS.md):
//! bus names, object paths, error names, polkit action ids, the app id, file locations.

/// The helper's well-known name on the system bus (versioned, like `org.freedesktop.bolt1`).
pub const BUS_NAME: &str = "io.github.passage.Helper1";
/// The helper's root object.
pub const OBJECT_PATH: &str = "/io/github/passage/Helper1";
/// The helper's interface.
pub const INTERFACE: &str = "io.github.passage.Helper1";
/// Prefix of the helper's named D-Bus errors (`…Error.NotFound`, `Busy`, …).
pub const ERROR_PREFIX: &str = "io.github.passage.Helper1.Error";

/// polkit: claim and release a group.
pub const ACTION_CLAIM: &str = "io.github.passage.claim";
/// polkit: claim a group the host needs (root disk, console, default route), with `force`.
pub const ACTION_CLAIM_HOST_CRITICAL: &str = "io.github.passage.claim-host-critical";
/// polkit: make a claim survive reboots.
pub const ACTION_PERSIST: &str = "io.github.passage.persist";
/// polkit: change the kernel command line in the boot configuration (`passagectl fix` of a
/// finding whose remedy is a kernel parameter); administrators only, every time.
pub const ACTION_FIX_BOOT_LINE: &str = "io.github.passage.fix-boot-line";
/// polkit: keep a device powered (`passagectl fix d3cold-allowed ADDRESS`), now and at every
/// boot.
pub const ACTION_FIX_D3COLD: &str = "io.github.passage.fix-d3cold";
/// polkit: give an SR-IOV physical function its virtual functions (`passagectl vfs`), now and
/// at every boot.
pub const ACTION_SET_VFS: &str = "io.github.passage.set-vfs";
/// Choose the size a resizable BAR gets whenever Passage claims the device.
pub const ACTION_SET_BAR_SIZE: &str = "io.github.passage.set-bar-size";
/// polkit: rehearse a group's reset (claim it, reset each member, give it back).
pub const ACTION_REHEARSE_RESET: &str = "io.github.passage.rehearse-reset";
/// The unit that carries out a boot-line change (the helper's own unit may not write
/// /etc/default or /boot).
pub const BOOT_LINE_UNIT: &str = "passage-boot-line.service";
/// polkit: open a group as QEMU would (`Verify`); active local users by default.
pub const ACTION_VERIFY: &str = "io.github.passage.verify";
/// polkit: read the host's description and the helper's holdings (`Describe`, `Claims`,
/// `Journal`); everyone by default, as lspci is, but an administrator can narrow it.
pub const ACTION_READ: &str = "io.github.passage.read";

/// The desktop app id (desktop file, metainfo, GSettings schema, icons).
pub const APP_ID: &str = "io.github.passage.Passage";
/// Where the app's GResource lives (GtkApplication's default for [`APP_ID`]).
pub const RESOURCE_BASE: &str = "/io/github/passage/Passage";

/// The environment variable that names a host root when `--root` is not given.
pub const ROOT_ENV: &str = "PASSAGE_ROOT";
/// Where the helper keeps its journal and persistent claims.
pub const STATE_DIR: &str = "/var/lib/passage";
/// The oneshot unit that regenerates the initramfs for persisted groups. The helper asks
/// systemd to start it: its own unit may not write /boot.
pub const INITRAMFS_UNIT: &str = "passage-initramfs.service";

/// The ssh program for `-H` (called with ssh's arguments, as git calls `GIT_SSH`); `ssh` when
/// unset.
pub const SSH_ENV: &str = "PASSAGE_SSH";

/// The QEMU program that runs guests here (what `export --format qemu` asks for its version
/// to choose the iommufd form); this architecture's `qemu-system-*` when unset.
pub const QEMU_ENV: &str = "PASSAGE_QEMU";

/// What runs on the other machine at the end of the SSH connection: systemd's bridge from
/// standard input and output to that machine's system bus (`systemctl -H` runs the same).
pub const STDIO_BRIDGE: &str = "systemd-stdio-bridge";

/// The helper's signal for a device that changed (the JSON of one `passagectl monitor --json`
/// line).
pub const SIGNAL_DEVICE_CHANGED: &str = "DeviceChanged";
