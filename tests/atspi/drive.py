#!/usr/bin/python3
"""Drives Passage the way a screen-reader user does: through the AT-SPI accessibility tree
(what Orca reads), with the keyboard for keys. Called by tests/gui.rs with the app already
running on DISPLAY and the session bus in DBUS_SESSION_BUS_ADDRESS.

    drive.py SCENARIO

Prints one line per step; exits 1 with the reason at the first thing that is not as a user
would find it. Debian: python3-gi, gir1.2-atspi-2.0, at-spi2-core."""

import re
import subprocess
import sys
import time

import gi

gi.require_version("Atspi", "2.0")
from gi.repository import Atspi  # noqa: E402


class Failed(Exception):
    pass


def say(*a):
    print(*a, flush=True)


def name(o):
    try:
        return o.get_name() or ""
    except Exception:
        return ""


def role(o):
    try:
        return o.get_role_name() or ""
    except Exception:
        return ""


def walk(o, depth=0, limit=60, last_first=False):
    """Every object under o (o first), depth first; the last children first when asked (the
    toasts and the status line are drawn last, over everything)."""
    if o is None or depth > limit:
        return
    yield o
    try:
        n = o.get_child_count()
    except Exception:
        return
    for i in (reversed(range(n)) if last_first else range(n)):
        try:
            c = o.get_child_at_index(i)
        except Exception:
            continue
        yield from walk(c, depth + 1, limit, last_first)


def app(timeout=60):
    """The passage application on the accessibility bus. Under a loaded machine (CI runs the
    app tests side by side) an answer from the app can take seconds: the wait is generous, and
    a failure says what the registry listed, and why a name could not be read."""
    end = time.time() + timeout
    seen = []
    while time.time() < end:
        d = Atspi.get_desktop(0)
        seen = []
        for i in range(d.get_child_count()):
            a = d.get_child_at_index(i)
            if a is None:
                seen.append("(none)")
                continue
            try:
                n = a.get_name() or ""
            except Exception as e:  # the app's answer timed out, or its connection is gone
                seen.append(f"(no name: {e})")
                continue
            if n == "passage":
                return a
            seen.append(repr(n))
        time.sleep(0.3)
    raise Failed("the app never appeared on the accessibility bus; the registry listed: "
                 + (", ".join(seen) or "no application"))


def find(root, what, pred, timeout=15, last_first=False):
    end = time.time() + timeout
    while time.time() < end:
        for o in walk(root, last_first=last_first):
            if pred(o):
                return o
        time.sleep(0.3)
    raise Failed(f"not found in {timeout} s: {what}")


def wait(what, pred, timeout=15):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        last = pred()
        if last is True:
            return
        time.sleep(0.3)
    raise Failed(f"{what} did not happen in {timeout} s (last seen: {last!r})")


def click(o):
    """The object's first action (a button's "click"), as a screen reader's Enter does."""
    if Atspi.Action.get_n_actions(o) < 1:
        raise Failed(f"{role(o)} {name(o)!r} has no action")
    Atspi.Action.do_action(o, 0)


def key(*keys):
    subprocess.run(["xdotool", "key", "--clearmodifiers", *keys], check=True)


def focused(a):
    """The object with the keyboard focus."""
    for o in walk(a):
        try:
            if o.get_state_set().contains(Atspi.StateType.FOCUSED):
                return o
        except Exception:
            continue
    return None


def tab_to(a, what, pred, limit=80):
    """Tab until the focus is on what pred accepts, as a keyboard user gets there."""
    for _ in range(limit):
        f = focused(a)
        if f is not None and pred(f):
            return f
        key("Tab")
        time.sleep(0.15)
    raise Failed(f"{limit} presses of Tab never reached {what}")


def to_card(a, group, limit=60):
    """The keyboard on a group's card: Tab into the list of groups, then the arrow keys, as a
    screen-reader user moves through a list."""
    tab_to(a, "the list of groups", lambda o: re.match(r"^(Group \d+:|Behind |On the )", name(o)))
    for _ in range(limit):
        m = re.match(r"^Group (\d+):", name(focused(a)))
        if m and int(m.group(1)) == group:
            return focused(a)
        key("Down" if not m or int(m.group(1)) < group else "Up")
        time.sleep(0.15)
    raise Failed(f"the arrow keys never reached group {group}'s card")


def status(a):
    """What the app last announced: its status-role line."""
    s = find(a, "the status line", lambda o: role(o) == "status bar", last_first=True)
    return name(s)


def card(a, group):
    return find(
        a,
        f"the card of group {group}",
        lambda o: role(o) == "panel" and name(o).startswith(f"Group {group}:"),
    )


CONTROLS = {"push button", "toggle button", "check box", "combo box", "entry", "text", "switch"}


def every_card_control_names_its_group(a):
    """No control on a card that does not say which group it acts on."""
    cards = 0
    bad = []
    for o in walk(a):
        m = re.match(r"^Group (\d+):", name(o))
        if role(o) != "panel" or not m:
            continue
        cards += 1
        g = m.group(1)
        for c in walk(o):
            if c is o or role(c) not in CONTROLS:
                continue
            if not re.search(rf"\bgroup {g}\b", name(c), re.IGNORECASE):
                bad.append(f"group {g}: {role(c)} {name(c)!r}")
    if cards < 5:
        raise Failed(f"only {cards} cards found on the accessibility bus")
    if bad:
        raise Failed("controls without their group:\n  " + "\n  ".join(bad))
    say(f"{cards} cards, every control names its group")


def assign_undo_redo():
    a = app()
    # One card opened, so its devices' switches and address fields are checked too.
    devices = find(a, "group 19's devices", lambda o: role(o) == "push button"
                   and name(o).startswith("Devices of group 19:"))
    click(devices)
    find(a, "group 19's device switches",
         lambda o: name(o).endswith("of group 19 visible to the guest"))
    every_card_control_names_its_group(a)
    planned = "Group 18 is planned for ci-runner; press Apply to claim it."
    c18 = card(a, 18)
    if "router" not in name(c18):
        raise Failed(f"group 18 does not start with router: {name(c18)!r}")
    # The card's menu, from the keyboard: to the card, then Shift+F10.
    to_card(a, 18)
    key("shift+F10")
    item = find(a, "the menu's 'Assign to ci-runner'",
                lambda o: role(o) == "push button" and name(o) == "Assign to ci-runner")
    say("menu open:", name(item))
    click(item)
    wait("the assignment to be announced", lambda: status(a) == planned or status(a))
    say("announced:", status(a))
    # The toast's Undo, as a screen reader reaches it.
    undo = find(a, "the toast's Undo button",
                lambda o: role(o) == "push button" and name(o).startswith(f"Undo: {planned}"),
                last_first=True)
    click(undo)
    wait("the undo to be announced",
         lambda: status(a) == f"Undone: {planned}" or status(a))
    wait("group 18 back with router", lambda: "router" in name(card(a, 18)) or name(card(a, 18)))
    say("announced:", status(a))
    # Redo from the keyboard.
    key("ctrl+shift+z")
    wait("the redo to be announced", lambda: status(a) == planned or status(a))
    wait("group 18 with ci-runner again",
         lambda: "ci-runner" in name(card(a, 18)) or name(card(a, 18)))
    say("announced:", status(a))


def about_and_shortcuts():
    a = app()
    menu = find(a, "the main menu button", lambda o: role(o) == "push button" and name(o) == "Main menu"
                and Atspi.Action.get_n_actions(o) > 0)
    click(menu)
    item = find(a, "About Passage in the main menu", lambda o: name(o) == "About Passage"
                and role(o) in ("menu item", "push button"))
    click(item)
    about = find(a, "the About window", lambda o: role(o) in ("frame", "dialog", "window")
                 and name(o).startswith("About"), timeout=10)
    say("opened:", name(about))
    version = find(about, "the version in About", lambda o: role(o) in ("label", "push button")
                   and re.match(r"^\d+\.\d+\.\d+", name(o)))
    say("version:", name(version))
    key("Escape")
    key("ctrl+question")
    row = find(a, "the shortcuts window's Undo row",
               lambda o: name(o) == "Undo the last change to the plan", timeout=10)
    say("shortcuts:", name(row))
    key("Escape")


def readiness_rehearse_and_vfs():
    """Host Readiness as a screen-reader user works it: the Rehearse button of group 19 (its
    name says which group), then the SR-IOV card's count and its Set button."""
    a = app()
    key("ctrl+shift+r")
    rehearse = find(a, "the Rehearse button of group 19",
                    lambda o: role(o) == "push button" and name(o) == "Rehearse the reset of group 19",
                    timeout=30)
    say("found:", name(rehearse))
    click(rehearse)
    said = find(a, "the rehearsal's outcome in the window's status line",
                lambda o: role(o) == "status bar" and "reboot" in name(o) and "Group 19" in name(o),
                timeout=60)
    say("said:", name(said).splitlines()[0])
    spin = find(a, "the virtual-function count of 0000:09:00.0",
                lambda o: role(o) == "spin button" and name(o) == "Virtual functions of 0000:09:00.0",
                timeout=60)
    # Wait for the rehearsal's read-again to settle before the next press (the buttons are off
    # while the helper works).
    wait("the Set button to take presses again", lambda: find(
        a, "the Set button", lambda o: role(o) == "push button"
        and name(o) == "Set the virtual functions of 0000:09:00.0").get_state_set().contains(
            Atspi.StateType.SENSITIVE), timeout=60)
    spin = find(a, "the virtual-function count of 0000:09:00.0",
                lambda o: role(o) == "spin button" and name(o) == "Virtual functions of 0000:09:00.0")
    if not Atspi.Value.set_current_value(spin, 4.0):
        raise Failed("the count did not take 4")
    say("count:", Atspi.Value.get_current_value(spin))
    set_button = find(a, "the Set button", lambda o: role(o) == "push button"
                      and name(o) == "Set the virtual functions of 0000:09:00.0")
    click(set_button)
    say("pressed:", name(set_button))


def readiness_bar_size():
    """Host Readiness: the GPU's resizable BAR 1, its size for claims (offered first: 256 MiB)
    and Set, each named for the BAR and the device."""
    a = app()
    key("ctrl+shift+r")
    choice = find(a, "the size choice of BAR 1 of 0000:0b:00.0",
                  lambda o: name(o) == "Size of BAR 1 of 0000:0b:00.0 for claims", timeout=30)
    say("choice:", role(choice), name(choice))
    set_button = find(a, "the Set button of BAR 1",
                      lambda o: role(o) == "push button"
                      and name(o) == "Set the size of BAR 1 of 0000:0b:00.0 for claims")
    click(set_button)
    said = find(a, "what the helper said, in the window's status line",
                lambda o: role(o) == "status bar" and "BAR 1 of 0000:0b:00.0 will be" in name(o),
                timeout=60)
    say("said:", name(said).splitlines()[0])


SCENARIOS = {"assign-undo-redo": assign_undo_redo, "about-and-shortcuts": about_and_shortcuts,
             "readiness-rehearse-and-vfs": readiness_rehearse_and_vfs,
             "readiness-bar-size": readiness_bar_size}

if __name__ == "__main__":
    try:
        SCENARIOS[sys.argv[1]]()
    except Failed as e:
        print(f"FAILED: {e}", flush=True)
        sys.exit(1)
    say("ok")
