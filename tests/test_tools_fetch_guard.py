"""`http_get` refuses non-public addresses unless `allowed_hosts` names the host.

No test here leaves the machine. ``socket.getaddrinfo`` is replaced by a fake DNS (numeric
hosts are parsed with ``AI_NUMERICHOST``, which never queries a server), and every TCP connection
httpcore opens goes through :func:`_connect`: loopback reaches the test server, the fake public
address ``INTERNET`` is routed to the test server too (it stands for "a public web site"), and
anything else fails at once with ``httpcore.ConnectError``.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpcore
import pytest

from configurable_agents.config.schema import ToolRef
from configurable_agents.config.settings import ToolsConfig
from configurable_agents.tools import ToolError, build_tools

INTERNET = "93.184.216.34"
"""A public address; connections to it reach the test server."""

UNREACHABLE = "93.184.216.35"
"""A public address nothing answers on."""

FAKE_DNS: dict[str, list[list[str]]] = {
    "localhost": [["127.0.0.1", "::1"]],
    "localhost.": [["127.0.0.1", "::1"]],
    "public.test": [[INTERNET]],
    "metadata.test": [["169.254.169.254"]],
    "ten.test": [["10.0.0.5"]],
    "cgnat.test": [["100.64.0.1"]],
    "ula.test": [["fd00::1"]],
    "linklocal6.test": [["fe80::1"]],
    "mcast.test": [["224.0.0.1"]],
    "reserved.test": [["240.0.0.1"]],
    "mapped.test": [["::ffff:10.0.0.1"]],
    "mixed.test": [[INTERNET, "10.0.0.1"]],
    # DNS rebinding: public when first asked, loopback from then on
    "rebind.test": [[UNREACHABLE], ["127.0.0.1"]],
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"secret" if parts.path == "/secret" else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    hits: list[str]


@pytest.fixture(scope="module")
def _running_server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


class Net:
    """The fake network: what was resolved and connected to, and the server's hits."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.port = server.server_port
        self.asked: list[str] = []
        self.connects: list[str] = []
        self.answers = {name: list(replies) for name, replies in FAKE_DNS.items()}

    def url(self, host: str, path: str = "/secret") -> str:
        return f"http://{host}:{self.port}{path}"

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.asked.append(name)
        replies = self.answers.get(name.lower())
        if replies is None:
            try:
                return _REAL_GETADDRINFO(
                    name, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
                )
            except socket.gaierror:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        addresses = replies.pop(0) if len(replies) > 1 else replies[0]
        return [_addrinfo(address, int(port or 0)) for address in addresses]


def _addrinfo(address: str, port: int) -> tuple[Any, ...]:
    if ipaddress.ip_address(address).version == 6:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


_REAL_GETADDRINFO = socket.getaddrinfo
_REAL_CONNECT = httpcore.SyncBackend.connect_tcp


@pytest.fixture
def net(_running_server: _Server, monkeypatch: pytest.MonkeyPatch) -> Net:
    """Fake DNS and a fake internet around the test server."""
    _running_server.hits.clear()
    fake = Net(_running_server)

    def connect(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        address = fake.getaddrinfo(host, port)[0][4][0]  # as the real connection would
        fake.connects.append(host)
        if address == INTERNET:
            address = "127.0.0.1"
        if not ipaddress.ip_address(address).is_loopback:
            raise httpcore.ConnectError(f"test: no route to {address}")
        return _REAL_CONNECT(self, address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    return fake


def http_get(config: dict[str, Any] | None = None) -> Any:
    ref = ToolRef(name="http_get", config=config or {})
    return build_tools([ref], ToolsConfig(), env={})[0]


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.1",
    "0x7f000001",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "localhost",
    "localhost.",
    "LocalHost",
    "evil@127.0.0.1",
    "user:pw@localhost",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_loopback_is_refused_in_every_spelling(net: Net, host: str) -> None:
    with pytest.raises(ToolError, match=r"is a loopback address.*allowed_hosts"):
        http_get().invoke({"url": net.url(host)})
    assert net.server.hits == []


@pytest.mark.parametrize("host", ["0", "0.0.0.0", "[::]", "0x0"])
def test_unspecified_address_is_refused(net: Net, host: str) -> None:
    # On Linux, connecting to 0.0.0.0 or :: reaches the local machine.
    with pytest.raises(ToolError, match="is an unspecified address"):
        http_get().invoke({"url": net.url(host)})
    assert net.server.hits == []


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("metadata.test", "link-local"),
        ("[fe80::1]", "link-local"),
        ("linklocal6.test", "link-local"),
        ("10.0.0.1", "private"),
        ("ten.test", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("[::ffff:192.168.1.1]", "private"),
        ("mapped.test", "private"),
        ("cgnat.test", "carrier-grade NAT"),
        ("ula.test", "unique-local"),
        ("[fc00::1]", "unique-local"),
        ("mcast.test", "multicast"),
        ("[ff02::1]", "multicast"),
        ("reserved.test", "reserved"),
        ("255.255.255.255", "reserved"),
        ("mixed.test", "private"),  # every address of a name must be public
    ],
)
def test_non_public_addresses_are_refused(net: Net, host: str, kind: str) -> None:
    with pytest.raises(ToolError, match=rf"is an? {kind} address"):
        http_get().invoke({"url": net.url(host)})
    assert net.connects == []  # refused before any connection was tried


def test_public_addresses_are_fetched(net: Net) -> None:
    assert http_get().invoke({"url": net.url("public.test", "/ok")}) == "ok"
    assert net.connects == [INTERNET]


def test_the_address_checked_is_the_address_connected_to(net: Net) -> None:
    # DNS rebinding: a second lookup would answer 127.0.0.1; the tool must not ask twice.
    with pytest.raises(ToolError, match="failed"):
        http_get().invoke({"url": net.url("rebind.test")})
    assert net.asked.count("rebind.test") == 1
    assert net.connects == [UNREACHABLE]
    assert net.server.hits == []


def test_every_redirect_hop_is_checked(net: Net) -> None:
    for target in ("127.0.0.1", "2130706433", "localhost.", "[::ffff:127.0.0.1]"):
        url = net.url("public.test", "/redirect?to=" + net.url(target))
        with pytest.raises(ToolError, match="is a loopback address"):
            http_get().invoke({"url": url})
    assert "/secret" not in net.server.hits


def test_allowed_hosts_permits_a_named_private_host(net: Net) -> None:
    fetch = http_get({"allowed_hosts": ["localhost", "127.0.0.1"]})
    assert fetch.invoke({"url": net.url("localhost")}) == "secret"
    assert fetch.invoke({"url": net.url("localhost.")}) == "secret"  # the same name
    assert fetch.invoke({"url": net.url("127.0.0.1")}) == "secret"
    with pytest.raises(ToolError, match="not in allowed_hosts"):
        fetch.invoke({"url": net.url("2130706433")})  # another spelling is another host


def test_allowed_hosts_redirects_stay_within_the_list(net: Net) -> None:
    redirect = "/redirect?to=" + net.url("127.0.0.1")
    with pytest.raises(ToolError, match=r"'127\.0\.0\.1' is not in allowed_hosts"):
        http_get({"allowed_hosts": ["public.test"]}).invoke(
            {"url": net.url("public.test", redirect)}
        )
    fetch = http_get({"allowed_hosts": ["public.test", "127.0.0.1"]})
    assert fetch.invoke({"url": net.url("public.test", redirect)}) == "secret"


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://127.0.0.1/", "ftp://public.test/", "//public.test/x", "x"],
)
def test_other_schemes_are_refused(net: Net, url: str) -> None:
    with pytest.raises(ToolError, match="only http and https"):
        http_get().invoke({"url": url})
    assert net.connects == []


def test_unresolvable_and_malformed_urls_are_tool_errors(net: Net) -> None:
    with pytest.raises(ToolError, match="cannot resolve"):
        http_get().invoke({"url": "http://nowhere.test/"})
    for url in ("http://[::1/", net.url("0177.0.0.1"), net.url("127.0.0.01"), "http://:80/"):
        with pytest.raises(ToolError, match="not a valid URL"):
            http_get().invoke({"url": url})
    assert net.connects == []


def test_https_checks_the_certificate_of_the_name_not_the_address(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    names: list[str | None] = []
    connect = httpcore.SyncBackend.connect_tcp  # the fake network's

    def connect_and_watch_tls(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        stream = connect(self, host, port, *args, **kwargs)

        def start_tls(ssl_context: Any, server_hostname: str | None = None, **_: Any) -> Any:
            names.append(server_hostname)
            raise httpcore.ConnectError("test: no TLS here")

        stream.start_tls = start_tls
        return stream

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_and_watch_tls)
    with pytest.raises(ToolError, match="no TLS here"):
        http_get().invoke({"url": f"https://public.test:{net.port}/ok"})
    assert net.connects == [INTERNET]  # connected to the checked address ...
    assert names == ["public.test"]  # ... and verified the certificate against the name
