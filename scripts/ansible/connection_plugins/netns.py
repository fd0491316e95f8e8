# netns.py — an Ansible connection plugin that runs a host's tasks inside a Linux network namespace
# on the controller: the local connection, with every command wrapped in `ip netns exec NS`.
#
# Made for shoal's simulated fleet (scripts/testbed.sh): each testbed host is a namespace on this
# machine, so files are local (put_file/fetch_file are plain copies, as with `local`) and only the
# network differs. Needs root (ip netns exec). The namespace is `ansible_netns`, or the inventory
# hostname when unset.
from __future__ import annotations

DOCUMENTATION = """
    name: netns
    short_description: run tasks inside a local network namespace
    description:
        - Like the local connection, but every command runs under C(ip netns exec NAMESPACE), so a
          namespace on the controller behaves like a separate host on the network.
    author: shoal
    options:
        netns:
            description: the network namespace to enter (default the inventory hostname)
            type: str
            vars:
                - name: ansible_netns
        become_success_timeout:
            type: int
            default: 10
            description: Number of seconds to wait for become to succeed when enabled.
            vars:
                - name: ansible_local_become_success_timeout
        become_strip_preamble:
            type: bool
            default: true
            description: Strip internal become output preceding command execution.
            vars:
                - name: ansible_local_become_strip_preamble
    extends_documentation_fragment:
        - connection_pipelining
"""

import re
import shlex

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.connection.local import Connection as LocalConnection

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Connection(LocalConnection):
    """Local connection whose commands run in a network namespace."""

    transport = "netns"
    has_pipelining = True

    def _namespace(self) -> str:
        ns = self.get_option("netns") or self._play_context.remote_addr
        if not ns or not NAME_RE.match(ns):
            raise AnsibleConnectionFailure("netns: bad or missing namespace name %r" % (ns,))
        return ns

    def exec_command(self, cmd, in_data=None, sudoable=True):
        ns = self._namespace()
        if not isinstance(cmd, str):
            cmd = " ".join(shlex.quote(to_text(c)) for c in cmd)
        wrapped = "ip netns exec %s /bin/sh -c %s" % (shlex.quote(ns), shlex.quote(to_text(cmd)))
        return super().exec_command(wrapped, in_data=in_data, sudoable=sudoable)
