"""Reads a Passage Nova export (cluster or single guest) on stdin the way Nova does: each
compute node's [pci] device_spec lines through Nova's own Whitelist (nova.pci.whitelist, which
builds nova.pci.devspec.PciDeviceSpec for each), and the aliases through Nova's own
nova.pci.request.get_alias_from_config. Prints, as JSON, per section ("# compute node NAME", or
"" for a single guest's export): the number of device specs Nova accepted and the aliases it
read. Exits non-zero with Nova's own error at the first thing Nova refuses.

Run with the Python of a venv holding Nova from PyPI (./dev test makes target/consumers/nova).
"""

import json
import sys
import warnings

warnings.simplefilter("ignore")

import nova.conf  # noqa: E402
from nova.pci import request, whitelist  # noqa: E402

CONF = nova.conf.CONF
# Only what the export says: no /etc/nova/nova.conf of this machine.
CONF([], project="nova", default_config_files=[])

sections = {}
name = ""
for line in sys.stdin:
    line = line.rstrip("\n")
    if line.startswith("# compute node "):
        name = line[len("# compute node "):]
    elif line.startswith("# API nodes"):
        name = "API nodes"
    if " = " not in line or line.startswith("#"):
        continue
    key, value = line.split(" = ", 1)
    s = sections.setdefault(name, {"device_spec": [], "alias": []})
    s[key].append(value)

out = {}
for name, s in sections.items():
    CONF.set_override("device_spec", s["device_spec"], group="pci")
    CONF.set_override("alias", s["alias"], group="pci")
    specs = whitelist.Whitelist(CONF.pci.device_spec).specs
    aliases = request.get_alias_from_config()
    out[name] = {
        "device_specs": len(specs),
        "aliases": {
            a: [spec.get("vendor_id") + ":" + spec.get("product_id") + " " + spec.get("dev_type", "")
                for spec in specs_of]
            for a, (_policy, specs_of) in aliases.items()
        },
    }
print(json.dumps(out, sort_keys=True))
