"""What the kernel says about our sockets: for tests that bound connections."""

from __future__ import annotations

from pathlib import Path

__all__ = ["established_to"]


def established_to(port: int) -> int:
    """Our TCP connections to 127.0.0.1:``port`` that are open (client side only), from /proc."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if state == "01" and int(remote.split(":")[1], 16) == port and int(local.split(":")[1], 16) != port:
            count += 1
    return count
