"""Another machine on a network, for the partition test: a Linux network namespace joined to
this one by a veth pair, packet loss and partitions by iptables in it, and a TCP forwarder
(with a delay) that carries its connections to the database server on 127.0.0.1.

Needs root and ``ip netns``; ``netem`` is not assumed (many kernels lack sch_netem), so the
delay is the forwarder's and the loss iptables' ``statistic`` match.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@dataclass
class Host:
    """The namespace ``name``, reachable from here at ``gateway``; commands run in it with
    ``prefix + argv``."""

    name: str
    device: str  # the namespace's end of the veth pair
    gateway: str  # this namespace's address on the pair
    rules: list[list[str]] = field(default_factory=list)

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def _iptables(self, *rule: str) -> None:
        subprocess.run([*self.prefix, "iptables", *rule], check=True, capture_output=True)

    def drop(self, probability: float = 1.0) -> None:
        """Drop this share of the packets to and from the gateway (1.0: a partition)."""
        match = ["-m", "statistic", "--mode", "random", "--probability", f"{probability}"]
        match = match if probability < 1.0 else []
        for chain, way in (("INPUT", "-i"), ("OUTPUT", "-o")):
            rule = [chain, way, self.device, *match, "-j", "DROP"]
            self._iptables("-A", *rule)
            self.rules.append(rule)

    def heal(self) -> None:
        """Remove every drop rule."""
        while self.rules:
            self._iptables("-D", *self.rules.pop())


def unavailable() -> str | None:
    """Why no namespace can be made here, or None."""
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"hps-probe-{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    try:
        rules = subprocess.run(
            ["ip", "netns", "exec", probe, "iptables", "-L", "-n"], capture_output=True, text=True
        )
        if rules.returncode != 0:
            return f"iptables does not work in a namespace: {rules.stderr.strip()}"
    finally:
        _ip("netns", "del", probe)
    return None


@contextlib.contextmanager
def host() -> Iterator[Host]:
    """A namespace on 10.200.N.2/30, this one on 10.200.N.1 (N random: tests run in parallel)."""
    tag = secrets.token_hex(3)
    name, outside, inside = f"hps-{tag}", f"vh{tag}o", f"vh{tag}i"
    subnet = f"10.200.{secrets.randbelow(256)}"
    steps = [
        ("netns", "add", name),
        ("link", "add", outside, "type", "veth", "peer", "name", inside),
        ("link", "set", inside, "netns", name),
        ("addr", "add", f"{subnet}.1/30", "dev", outside),
        ("link", "set", outside, "up"),
        ("-n", name, "addr", "add", f"{subnet}.2/30", "dev", inside),
        ("-n", name, "link", "set", inside, "up"),
        ("-n", name, "link", "set", "lo", "up"),
    ]
    try:
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                raise RuntimeError(f"ip {' '.join(step)}: {done.stderr.strip()}")
        yield Host(name, inside, f"{subnet}.1")
    finally:
        _ip("netns", "del", name)  # takes its end of the pair, and so the pair, with it
        _ip("link", "del", outside)


class Forwarder:
    """Listens on ``address`` (port chosen) and forwards each connection to ``target``,
    holding every chunk ``delay`` seconds: the latency of a long network."""

    def __init__(self, address: str, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.server = socket.create_server((address, 0))
        self.port = int(self.server.getsockname()[1])
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                time.sleep(self.delay)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.server.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
