"""Fetching URLs without reaching the machine itself or its private network.

A tool that fetches a URL the model chose (`http_get`) must not become a way into what only the
host can reach: its loopback services, the cloud metadata endpoint at 169.254.169.254, the office
network. :func:`guarded_client` gives an ``httpx.Client`` that

* accepts only ``http`` and ``https`` URLs, and, when ``allowed_hosts`` is given, only those
  hosts, on every request including each redirect hop;
* resolves each host name once, refuses it unless every address it resolves to is public (see
  :func:`address_problem`), and then connects to exactly the address it checked, so a DNS answer
  that changes between the check and the connection (DNS rebinding) cannot slip through.

Because the check is made on the resolved address, every spelling of a host is covered alike:
``2130706433``, ``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``, ``localhost.`` all resolve to a
loopback address. A host named in ``allowed_hosts`` may resolve to anything: naming it is how a
workflow reaches an intranet service or a local test server. Proxy settings from the environment
are not used, since the address checked must be the one connected to.

This module imports httpx and httpcore; import it only where a client is built.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from .errors import ToolError

__all__ = ["GuardedBackend", "address_problem", "check_url", "guarded_client", "normal_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 addresses seen through a NAT64 gateway
_HINT = "only public addresses are fetched unless config.allowed_hosts names the host"


def address_problem(address: str) -> str | None:
    """What kind of non-public address ``address`` is, or ``None`` for a public one.

    IPv6 forms that carry an IPv4 address (``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96`` and 6to4
    ``2002::/16``) are judged by the IPv4 address they carry too.

    Args:
        address: An IPv4 or IPv6 address as text, e.g. ``"169.254.169.254"`` or ``"fe80::1%eth0"``.

    Returns:
        E.g. ``"a link-local address"``; ``None`` when the address is public.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _kind(ip.ipv4_mapped)
        if ip in _NAT64:
            return _kind(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            return _kind(ip.sixtofour) or _kind(ip)
    return _kind(ip)


def _kind(ip: IPAddress) -> str | None:
    """The first class ``ip`` falls in that makes it non-public."""
    checks = [
        (ip.is_unspecified, "an unspecified"),
        (ip.is_loopback, "a loopback"),
        (ip.is_link_local, "a link-local"),
        (ip.is_multicast, "a multicast"),
        (ip in _UNIQUE_LOCAL, "a unique-local"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local"),
        (ip in _SHARED, "a carrier-grade NAT"),
        (ip.is_reserved, "a reserved"),
        (ip.is_private, "a private"),
        (not ip.is_global, "a non-public"),
    ]
    return next((f"{kind} address" for hit, kind in checks if hit), None)


def normal_host(host: str) -> str:
    """``host`` as compared with `allowed_hosts`: lower case, no brackets, no trailing dot, and
    an internationalised name in its ASCII (``xn--``) form."""
    host = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    if not host.isascii():
        with contextlib.suppress(UnicodeError):  # left as written: it matches nothing
            host = host.encode("idna").decode("ascii")
    return host


def check_url(tool: str, url: str | httpx.URL, allowed: frozenset[str] | None) -> httpx.URL:
    """Refuse a URL whose scheme is not http(s), or whose host is not in ``allowed``.

    Args:
        tool: Tool name the error messages start with.
        url: The URL, as given or as httpx parsed it.
        allowed: Normalised `allowed_hosts` (see :func:`normal_host`); ``None`` allows any host.

    Returns:
        The parsed URL.

    Raises:
        ToolError: The URL is malformed, not http(s), or its host is not allowed.
    """
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ToolError(f"{tool}: not a valid URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise ToolError(f"{tool}: only http and https URLs are allowed, not {str(url)!r}")
    if not parsed.host:
        raise ToolError(f"{tool}: not a valid URL: {str(url)!r} has no host")
    if allowed is not None and normal_host(parsed.raw_host.decode("ascii")) not in allowed:
        raise ToolError(f"{tool}: host {parsed.host!r} is not in allowed_hosts")
    return parsed


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, each once.

    Raises:
        httpcore.ConnectError: The name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that connects only to public addresses.

    Every connection (every redirect hop that needs one) resolves its host once, checks every
    address with :func:`address_problem`, and connects to those checked addresses by number.
    Hosts in ``allowed`` are connected to without the check.
    """

    def __init__(self, tool: str, allowed: frozenset[str] | None) -> None:
        self.tool = tool
        self.allowed = allowed or frozenset()
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve, check, then connect to the first checked address that answers.

        Raises:
            ToolError: An address ``host`` resolves to is not public.
            httpcore.ConnectError: The name does not resolve, or no address answers.
        """
        if normal_host(host) in self.allowed:
            return self.inner.connect_tcp(
                host, port, timeout, local_address, socket_options=socket_options
            )
        addresses = resolve(host, port)
        for address in addresses:
            problem = address_problem(address)
            if problem:
                same = normal_host(host) == normal_host(address)
                subject = host if same else f"{host} resolves to {address}, which"
                raise ToolError(f"{self.tool}: {subject} is {problem}; {_HINT}")
        error: Exception = httpcore.ConnectError(f"no address of {host!r} answered")
        for address in addresses:
            try:
                return self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:  # try the next address; a timeout ends it
                error = exc
        raise error

    def sleep(self, seconds: float) -> None:
        """Wait, as the wrapped backend does (used between connection retries)."""
        self.inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, with its connection pool on a :class:`GuardedBackend`."""

    def __init__(self, backend: GuardedBackend) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no public option for the network backend: replace the pool it built.
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=backend)


def guarded_client(tool: str, allowed_hosts: Iterable[str] | None, timeout: float) -> httpx.Client:
    """An ``httpx.Client`` that follows redirects and fetches only what the rules allow.

    Args:
        tool: Tool name the error messages start with, e.g. ``"http_get"``.
        allowed_hosts: The tool's `allowed_hosts`: when given, the only hosts it may fetch from,
            each of them also allowed to resolve to a non-public address. ``None``: any host
            whose addresses are all public.
        timeout: Seconds each request may take.

    Returns:
        A client to use as a context manager. Its requests raise :class:`ToolError` when a rule
        refuses them (redirect hops included), and httpx errors otherwise.
    """
    allowed = None if allowed_hosts is None else frozenset(map(normal_host, allowed_hosts))

    def on_request(request: httpx.Request) -> None:
        check_url(tool, request.url, allowed)  # every request, redirects included

    return httpx.Client(
        transport=_GuardedTransport(GuardedBackend(tool, allowed)),
        timeout=timeout,
        follow_redirects=True,
        trust_env=False,
        event_hooks={"request": [on_request]},
    )
