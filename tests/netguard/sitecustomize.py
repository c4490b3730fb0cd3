"""Loaded by the server processes of the federation tests (PYTHONPATH): a connection to any
address outside the loopback range is refused and written down in NETGUARD_LOG.

Tests send our server actor ids and key ids that point at 169.254.169.254 and other hosts:
should the server try one, the attempt stays on this machine and the test can see it.
"""

import ipaddress
import os
import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _addresses(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.split("%", 1)[0]))]
    except ValueError:  # a name: what it resolves to
        return [info[4][0] for info in socket.getaddrinfo(host, None)]


def _outside(address) -> str | None:
    """The first address of `address` that is not loopback, or None."""
    if not isinstance(address, tuple):  # a Unix socket
        return None
    for ip in _addresses(address[0]):
        if not ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback:
            return ip
    return None


def _refuse(address) -> None:
    with open(os.environ["NETGUARD_LOG"], "a") as log:
        log.write(f"{os.getpid()} connect {address!r}\n")
    raise ConnectionRefusedError(f"netguard: {address!r} is outside the loopback range")


def _guarded_connect(self, address):
    if _outside(address):
        _refuse(address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    if _outside(address):
        _refuse(address)
    return _connect_ex(self, address)


if os.environ.get("NETGUARD_LOG"):
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    # Each guarded process says so, for a test to check before it sends anything risky.
    with open(os.environ["NETGUARD_LOG"] + ".guarded", "a") as guarded:
        guarded.write(f"{os.getpid()}\n")
