# Passage: build, install, uninstall. `./dev run` and `./dev test` are the everyday entry points.
#
#   make                      release build of passagectl and passage-helper
#   make install DESTDIR=… PREFIX=…    (PREFIX defaults to /usr/local)
#   make uninstall
#
# Files the system reads only from fixed places (D-Bus system policy and activation, systemd
# units, polkit actions, the libvirt qemu hook) go there whatever the PREFIX.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(PREFIX)/bin
LIBEXECDIR = $(PREFIX)/libexec
DATADIR = $(PREFIX)/share
DBUS_SYSTEM_CONF = /usr/share/dbus-1/system.d
DBUS_SYSTEM_SERVICES = /usr/share/dbus-1/system-services
SYSTEMD_UNITS = /usr/lib/systemd/system
POLKIT_ACTIONS = /usr/share/polkit-1/actions
# libvirt (6.5 and newer) runs every executable in qemu.d; a hook of the user's own stays.
LIBVIRT_HOOKS = /etc/libvirt/hooks/qemu.d
CARGO ?= cargo
# Where the built binaries are (tests install their debug build with BINSRC=target/debug).
BINSRC ?= target/release

LANGS = $(shell grep -v '^\s*\#' po/LINGUAS)

INSTALLED = \
	$(BINDIR)/passagectl \
	$(BINDIR)/passage \
	$(DATADIR)/applications/io.github.passage.Passage.desktop \
	$(DATADIR)/metainfo/io.github.passage.Passage.metainfo.xml \
	$(DATADIR)/icons/hicolor/scalable/apps/io.github.passage.Passage.svg \
	$(DATADIR)/icons/hicolor/symbolic/apps/io.github.passage.Passage-symbolic.svg \
	$(foreach l,$(LANGS),$(DATADIR)/locale/$(l)/LC_MESSAGES/passage.mo) \
	$(LIBEXECDIR)/passage-helper \
	$(DBUS_SYSTEM_CONF)/io.github.passage.Helper1.conf \
	$(DBUS_SYSTEM_SERVICES)/io.github.passage.Helper1.service \
	$(SYSTEMD_UNITS)/passage-helper.service \
	$(SYSTEMD_UNITS)/passage-reclaim.service \
	$(POLKIT_ACTIONS)/io.github.passage.policy \
	$(DATADIR)/dbus-1/interfaces/io.github.passage.Helper1.xml \
	$(LIBVIRT_HOOKS)/passage

all:
	PASSAGE_LOCALEDIR=$(DATADIR)/locale $(CARGO) build --release --bins

install: all
	install -Dm755 $(BINSRC)/passagectl $(DESTDIR)$(BINDIR)/passagectl
	install -Dm755 $(BINSRC)/passage $(DESTDIR)$(BINDIR)/passage
	install -Dm644 data/io.github.passage.Passage.desktop $(DESTDIR)$(DATADIR)/applications/io.github.passage.Passage.desktop
	install -Dm644 data/io.github.passage.Passage.metainfo.xml $(DESTDIR)$(DATADIR)/metainfo/io.github.passage.Passage.metainfo.xml
	install -Dm644 assets/icons/hicolor/scalable/apps/io.github.passage.Passage.svg $(DESTDIR)$(DATADIR)/icons/hicolor/scalable/apps/io.github.passage.Passage.svg
	install -Dm644 assets/icons/hicolor/symbolic/apps/io.github.passage.Passage-symbolic.svg $(DESTDIR)$(DATADIR)/icons/hicolor/symbolic/apps/io.github.passage.Passage-symbolic.svg
	for l in $(LANGS); do install -d $(DESTDIR)$(DATADIR)/locale/$$l/LC_MESSAGES && msgfmt -o $(DESTDIR)$(DATADIR)/locale/$$l/LC_MESSAGES/passage.mo po/$$l.po || exit 1; done
	install -Dm755 $(BINSRC)/passage-helper $(DESTDIR)$(LIBEXECDIR)/passage-helper
	install -Dm644 data/dbus/io.github.passage.Helper1.conf $(DESTDIR)$(DBUS_SYSTEM_CONF)/io.github.passage.Helper1.conf
	sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' data/dbus/io.github.passage.Helper1.service.in | \
		install -Dm644 /dev/stdin $(DESTDIR)$(DBUS_SYSTEM_SERVICES)/io.github.passage.Helper1.service
	sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' data/systemd/passage-helper.service.in | \
		install -Dm644 /dev/stdin $(DESTDIR)$(SYSTEMD_UNITS)/passage-helper.service
	sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' data/systemd/passage-reclaim.service.in | \
		install -Dm644 /dev/stdin $(DESTDIR)$(SYSTEMD_UNITS)/passage-reclaim.service
	install -Dm644 data/polkit/io.github.passage.policy $(DESTDIR)$(POLKIT_ACTIONS)/io.github.passage.policy
	install -Dm644 data/io.github.passage.Helper1.xml $(DESTDIR)$(DATADIR)/dbus-1/interfaces/io.github.passage.Helper1.xml
	sed 's|@BINDIR@|$(BINDIR)|g' data/libvirt/qemu-hook.in | \
		install -Dm755 /dev/stdin $(DESTDIR)$(LIBVIRT_HOOKS)/passage

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

.PHONY: all install uninstall
