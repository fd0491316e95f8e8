"""Shared code of the libtorrent test harnesses (lt_seed.py, lt_fetch.py).

A libtorrent 2.0 session bound to one local address (127.0.0.1 by default; --host for an
address inside a test network namespace): no DHT, LSD, UPnP or NAT-PMP (nothing may leave
the machine), several connections per IP allowed (every test peer is 127.0.0.1), and a
tracker only if the torrent names one (libtorrent ignores a loopback tracker unless its URL
path is /announce). Peers' byte counters are sampled while they are connected, because
libtorrent forgets a peer's totals once it disconnects.
"""
import json
import signal
import sys
import time

import libtorrent as lt


def session(port, bench=False, host="127.0.0.1"):
    settings = lt.high_performance_seed() if bench else {}
    settings.update({
        "listen_interfaces": "%s:%d" % (host, port),
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "ignore_limits_on_local_network": False,  # rate limits must apply on loopback too
        "user_agent": "lt_harness/" + lt.__version__,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
    })
    return lt.session(settings)


def add(ses, torrent, save_path, seed_mode=False):
    if torrent.startswith("magnet:"):
        # The metadata comes from peers (BEP 9); the tr= trackers and x.pe= peers are used.
        atp = lt.parse_magnet_uri(torrent)
    else:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_path
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    if seed_mode:
        atp.flags |= lt.torrent_flags.seed_mode
    return ses.add_torrent(atp)


def parse_peer(s):
    host, _, port = s.rpartition(":")
    return (host, int(port))


class PeerBook:
    """Largest byte counters seen per remote address (sampled while connected)."""

    def __init__(self):
        self.peers = {}

    def sample(self, handle):
        for p in handle.get_peer_info():
            addr = "%s:%d" % (p.ip[0], p.ip[1])
            e = self.peers.setdefault(addr, {"addr": addr, "client": "", "downloaded": 0, "uploaded": 0})
            client = p.client.decode(errors="replace") if isinstance(p.client, bytes) else p.client
            e["client"] = client or e["client"]
            e["downloaded"] = max(e["downloaded"], p.total_download)
            e["uploaded"] = max(e["uploaded"], p.total_upload)

    def list(self):
        return sorted(self.peers.values(), key=lambda e: e["addr"])


def drain_errors(ses, prog):
    for a in ses.pop_alerts():
        if a.category() & lt.alert.category_t.error_notification:
            print("%s: %s: %s" % (prog, a.what(), a.message()), file=sys.stderr, flush=True)


def stop_flag():
    flag = {"stop": False}

    def handler(*_):
        flag["stop"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return flag


def report(obj):
    print(json.dumps(obj), flush=True)
