"""Who may use the server: API keys, allowed Host names and allowed Origins.

Pure decisions on header values, so every rule is unit-tested without a server; the ASGI
middleware in guard.py applies them to each request and WebSocket handshake.

Why each rule exists, for a server people share on a LAN:
- Keys: anyone on the network could otherwise use (and read the answers of) the model.
- Host: a web page on evil.example can make its own name resolve to 127.0.0.1 (DNS
  rebinding) and then read this server as "same origin". A Host header that names a
  foreign domain is refused. IP literals are always fine: rebinding needs a name.
- Origin: browsers apply no CORS to WebSockets and send "simple" POSTs cross-site, so a page
  the user visits could talk to the server through the user's browser. Only the server's
  own page (or origins listed with --cors-origin) may.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOCAL_USER = "local"  # who owns requests made without a key, or with an unnamed one
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def split_host_port(value: str) -> tuple[str, int | None]:
    """'Example.COM:8080' -> ('example.com', 8080); '[::1]:80' -> ('::1', 80)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""  # a bare IPv6 address or a name without a port
    return host.rstrip("."), int(port) if port.isdigit() else None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def machine_names() -> set[str]:
    """The names this machine answers to on a LAN: its hostname, FQDN and mDNS name."""
    names = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        name = name.lower().rstrip(".")
        if name:
            names.update({name, name.split(".")[0], name.split(".")[0] + ".local"})
    return names


@dataclass(frozen=True)
class AccessPolicy:
    keys: dict[str, str] = field(default_factory=dict)  # key -> the user it names
    allowed_hosts: frozenset[str] | None = frozenset()  # besides loopback, IPs and our names; None: any
    cors_origins: frozenset[str] = frozenset()  # "scheme://host[:port]", lower case
    machine_names: frozenset[str] = frozenset()

    @classmethod
    def build(cls, keys: dict[str, str] | None = None, allowed_hosts: list[str] | tuple[str, ...] = (),
              cors_origins: list[str] | tuple[str, ...] = (), bound_host: str | None = None) -> AccessPolicy:
        hosts = {split_host_port(h)[0] for h in allowed_hosts}
        if bound_host:
            hosts.add(split_host_port(bound_host)[0])
        return cls(
            keys=dict(keys or {}),
            allowed_hosts=None if "*" in hosts else frozenset(hosts),
            cors_origins=frozenset(normalize_origin(o) for o in cors_origins),
            machine_names=frozenset(machine_names()),
        )

    @property
    def needs_key(self) -> bool:
        return bool(self.keys)

    def user_for_key(self, presented: str | None) -> str | None:
        """The user a key names, or None. Every key is compared in constant time, so the
        time taken does not tell how much of a guess was right, or which key it was near."""
        if not presented:
            return None
        found = None
        given = presented.encode()
        for key, user in self.keys.items():
            if hmac.compare_digest(given, key.encode()):
                found = user
        return found

    def user_for_authorization(self, header: str | None) -> str | None:
        """`Authorization: Bearer KEY` -> the user; None when missing or wrong."""
        if not header:
            return None
        scheme, _, key = header.strip().partition(" ")
        return self.user_for_key(key.strip()) if scheme.lower() == "bearer" else None

    def host_allowed(self, host_header: str | None) -> bool:
        if self.allowed_hosts is None:
            return True
        if not host_header:
            return False  # HTTP/1.1 requires it; only odd clients leave it out
        host, _ = split_host_port(host_header)
        return (is_ip_literal(host) or is_loopback(host) or host in self.machine_names
                or host in self.allowed_hosts)

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """No Origin (curl, SDKs, same-origin GETs) is fine; a browser page may talk to us
        only from our own origin, from this server under another loopback name (the page
        opened as localhost, the API called as 127.0.0.1), or from a listed origin."""
        if origin is None:
            return True
        origin = normalize_origin(origin)
        if origin in self.cors_origins:
            return True
        if origin == "null" or not host_header:
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        origin_host, origin_port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        host, port = split_host_port(host_header)
        port = port or (443 if parts.scheme == "https" else 80)
        if origin_port != port:
            return False
        return origin_host == host or (is_loopback(origin_host) and is_loopback(host))

    def is_cors_origin(self, origin: str | None) -> bool:
        return origin is not None and normalize_origin(origin) in self.cors_origins


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()
