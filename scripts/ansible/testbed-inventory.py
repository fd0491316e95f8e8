#!/usr/bin/python3
"""testbed-inventory.py — dynamic Ansible inventory for scripts/testbed.sh's namespaces.

    ansible-playbook -i testbed-inventory.py fleet.yml        (as root, with the testbed up)

Lists every namespace PREFIX-hI that exists now (PREFIX = $SHOAL_TESTBED_PREFIX, default "shoal"):
PREFIX-h0 in group `origin`, the others in `fleet`, all reached through the `netns` connection
plugin (connection_plugins/netns.py). Since all namespaces share this machine's filesystem, each
host gets its own directories under $SHOAL_ANSIBLE_WORK (default /tmp/shoal-ansible).
Environment: SHOAL_BIN_DIR (default <repo>/target/release), SHOAL_FLEET_FILE (the file to send;
default $SHOAL_ANSIBLE_WORK/fleet.bin), SHOAL_SEEDER (btrack or bseed, default btrack),
SHOAL_SUPER_SEED (bseed mode: false seeds without --super-seed), SHOAL_TIMEOUT_SECS (default 600).
With no testbed up it lists no hosts (the playbook then does nothing)."""
import json
import os
import re
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
prefix = os.environ.get("SHOAL_TESTBED_PREFIX", "shoal")
work = os.environ.get("SHOAL_ANSIBLE_WORK", "/tmp/shoal-ansible")


def hosts():
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    except OSError:
        return []
    idx = []
    for line in out.splitlines():
        m = re.fullmatch(r"%s-h(\d+)" % re.escape(prefix), line.split()[0] if line.split() else "")
        if m:
            idx.append(int(m.group(1)))
    return sorted(idx)


def addr(i):
    return "10.77.%d.%d" % (i // 250, i % 250 + 1)


def inventory():
    idx = hosts()
    hostvars = {}
    for i in idx:
        name = "%s-h%d" % (prefix, i)
        hostvars[name] = {
            "ansible_connection": "netns",
            "ansible_netns": name,
            "ansible_python_interpreter": "/usr/bin/python3",
            "shoal_addr": addr(i),
            "shoal_dest": os.path.join(work, name),
        }
    all_vars = {
        # The namespaces share this machine's filesystem and have no systemd of their own:
        # the role starts btrack directly (see roles/shoal/defaults/main.yml).
        "shoal_service_manager": "direct",
        "shoal_bin": os.environ.get("SHOAL_BIN_DIR", os.path.join(repo, "target", "release")),
        "shoal_file": os.environ.get("SHOAL_FLEET_FILE", os.path.join(work, "fleet.bin")),
        "shoal_seeder": os.environ.get("SHOAL_SEEDER", "btrack"),
        "shoal_super_seed": os.environ.get("SHOAL_SUPER_SEED", "true") not in ("0", "false", "no"),
        "shoal_tracker_addr": addr(0),
        "shoal_data_dir": os.path.join(work, "%s-h0-btrack" % prefix),
        "shoal_controller_dir": os.path.join(work, "torrents"),
        "shoal_timeout_secs_default": int(os.environ.get("SHOAL_TIMEOUT_SECS", "600")),
    }
    return {
        "_meta": {"hostvars": hostvars},
        "all": {"children": ["origin", "fleet"], "vars": all_vars},
        "origin": {"hosts": ["%s-h%d" % (prefix, i) for i in idx if i == 0]},
        "fleet": {"hosts": ["%s-h%d" % (prefix, i) for i in idx if i != 0]},
    }


def main(argv):
    if len(argv) >= 1 and argv[0] == "--list":
        print(json.dumps(inventory(), indent=1))
    elif len(argv) >= 2 and argv[0] == "--host":
        print(json.dumps(inventory()["_meta"]["hostvars"].get(argv[1], {})))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
