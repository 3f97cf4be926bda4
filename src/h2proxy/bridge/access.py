"""Who may use a route: its ``allow`` and ``deny`` networks, checked on the client's
real address. Pure, no I/O, no Twisted.

The real address is the peer (after the PROXY protocol, the address the load
balancer reported) unless the peer is a trusted proxy: then X-Forwarded-For is read
from the right, hop by hop, while the hop that reported the next one is trusted
(L{client_of}). An untrusted peer's X-Forwarded-For is never read, so a client
cannot pick the address it is judged by.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from h2proxy.bridge.headers import ForwardingPolicy, IPNetwork
from h2proxy.config.model import RouteConfig
from h2proxy.message import Headers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> IPAddress | None:
    """C{text} as an IP address, an IPv4-mapped IPv6 address as the IPv4 address it
    carries (a dual-stack listener's view of an IPv4 client); C{None} when it is not
    an address (``unknown``, a port attached, garbage in a forwarded field)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_of(peer: str, headers: Headers, policy: ForwardingPolicy) -> str:
    """The address a request is judged by: C{peer} itself, or, while the address at
    hand is a trusted proxy, the X-Forwarded-For hop it appended (read from the
    right). The walk stops at the first untrusted address, or at a hop that is not
    an address, keeping the last address that could be believed."""
    if not policy.trusts(peer):
        return peer
    hops = [hop.strip() for name, value in headers if name == b"x-forwarded-for" for hop in value.split(b",")]
    client = peer
    for hop in reversed(hops):
        address = parse_address(hop.decode("ascii", "replace"))
        if address is None:
            break
        client = str(address)  # parse_address already unmapped an IPv4-mapped address
        if not policy.trusts(client):
            break
    return client


@dataclass(frozen=True, slots=True)
class AccessRule:
    """A route's networks: C{deny} wins, then C{allow} (when given) must match.

    @ivar allow: the only networks served; C{None} when the route does not limit them.
    @ivar deny: networks refused.
    """

    allow: tuple[IPNetwork, ...] | None
    deny: tuple[IPNetwork, ...]

    @classmethod
    def fromConfig(cls, config: RouteConfig) -> "AccessRule | None":
        """The route's rule, or C{None} for a route open to everyone."""
        if config.allow is None and not config.deny:
            return None
        return cls(
            allow=None if config.allow is None else tuple(ipaddress.ip_network(text) for text in config.allow),
            deny=tuple(ipaddress.ip_network(text) for text in config.deny),
        )

    def permits(self, client: str) -> bool:
        """Whether C{client} (an address as L{client_of} gives it) may use the route.
        A client whose address cannot be read (a UNIX socket) is refused: a rule
        that cannot be checked does not let anyone through."""
        address = parse_address(client)
        if address is None:
            return False
        if any(address in network for network in self.deny):
            return False
        return self.allow is None or any(address in network for network in self.allow)
