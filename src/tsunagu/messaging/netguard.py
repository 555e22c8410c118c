"""Outbound HTTP that stays off private networks (server-side request forgery guard).

Outbound webhook URLs and push endpoints come from operators' journeys and customers' browsers, so they may
point at anything: the metadata service of the cloud tsunagu runs in, an admin port on loopback, a database
on the office network. ``post`` refuses those unless the workspace allows private webhooks:

- the host is resolved once and *every* address it resolves to is checked, so a name that resolves to one
  public and one private address is refused;
- the connection goes to an address that was checked, never to the name again: a DNS answer that changes
  between the check and the connect (DNS rebinding) cannot redirect it. The ``Host`` header and TLS SNI and
  certificate check still use the name;
- redirects are followed by hand, a few at most, and each hop is resolved and checked the same way.

Nothing here knows about channels or the database: it raises ``AddressRefused`` / ``TooManyRedirects``,
``OSError`` or ``http.client.HTTPException`` for the network, and the channel maps those to delivery errors.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from tsunagu.core import clock

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Cloud instance-metadata endpoints, named so a refusal says what was reached for. Most already fall in a
# refused range (link-local, shared, unique-local); the table keeps the reason explicit.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"): "cloud metadata",  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"): "cloud metadata",  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"): "cloud metadata",  # Alibaba Cloud
    ipaddress.ip_address("192.0.0.192"): "cloud metadata",  # Oracle Cloud
    ipaddress.ip_address("fd00:ec2::254"): "cloud metadata",  # AWS over IPv6
}

_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), kind)
    for net, kind in (
        ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches loopback on Linux
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space"),  # carrier-grade NAT, also cloud-internal
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast (deprecated)
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),  # benchmarking
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255, broadcast
    )
)

_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), kind)
    for net, kind in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved"),  # IPv4-compatible addresses (deprecated)
        ("100::/64", "reserved"),  # discard-only
        ("2001::/23", "reserved"),  # IETF protocol assignments (Teredo, ORCHID, benchmarking)
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),  # deprecated, still routed inside some networks
        ("ff00::/8", "multicast"),
    )
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits are IPv4
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


class AddressRefused(Exception):
    """The URL's host is, or resolves to, an address outside the public internet."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        super().__init__(f"refused: {host} resolves to a private address ({address}, {kind})")
        self.host = host
        self.address = address
        self.kind = kind


class TooManyRedirects(Exception):
    pass


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names
    body: bytes  # at most ``max_body`` bytes of it
    url: str  # the URL that answered, after redirects
    hops: list[str] = field(default_factory=list)  # every URL requested, in order


def address_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address ("loopback", "private", ...), or None if it is."""
    if address in _METADATA:
        return _METADATA[address]
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address carried inside IPv6 reaches the IPv4 host: judge the embedded one.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            kind = address_kind(embedded)
            return f"IPv4-mapped {kind}" if kind else None
        for net6, kind in _V6_RANGES:
            if address in net6:
                return kind
        if address not in _GLOBAL_UNICAST:
            return "reserved"  # unassigned by IANA: nothing public answers there
        return None if address.is_global else "reserved"
    for net4, kind in _V4_RANGES:
        if address in net4:
            return kind
    return None if address.is_global else "reserved"


def resolve_checked(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses of ``host``, each checked; raise ``AddressRefused`` if any is not public (unless
    ``allow_private``) and ``OSError`` when the name does not resolve. Connect to these, not to ``host``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0])
        if text in addresses:
            continue
        if not allow_private:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            kind = address_kind(address)
            if kind is not None:
                raise AddressRefused(host, text, kind)
        addresses.append(text)
    if not addresses:
        raise OSError(f"{host} has no IPv4 or IPv6 address")
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Speaks to ``host`` (Host header) over a socket to an address checked beforehand."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned_address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address, with SNI and the certificate checked against ``host``."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.pinned_address = address
        self.tls_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.pinned_address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)


def _split(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, parts.hostname, port, target


def _request_once(
    url: str, *, method: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool,
    max_body: int, context: ssl.SSLContext | None,
) -> Response:
    scheme, host, port, target = _split(url)
    addresses = resolve_checked(host, port, allow_private=allow_private)
    last_error: OSError | None = None
    for address in addresses:
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = _PinnedHTTPSConnection(
                host, port, address=address, timeout=timeout, context=context or ssl.create_default_context()
            )
        else:
            conn = _PinnedHTTPConnection(host, port, address=address, timeout=timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:  # try the name's next address, as a browser would
                last_error = exc
                continue
            conn.request(method, target, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read(max_body)
            return Response(
                status=answer.status,
                reason=answer.reason,
                headers={k.lower(): v for k, v in answer.getheaders()},
                body=data,
                url=url,
            )
        finally:
            conn.close()
    assert last_error is not None
    raise last_error


def post(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    allow_private: bool,
    timeout: float = 10.0,
    max_redirects: int = 3,
    max_body: int = 65536,
    tls_context: ssl.SSLContext | None = None,
) -> Response:
    """POST ``body`` to ``url`` on a public address, following up to ``max_redirects`` redirects (the same
    request is sent to each new location, every hop checked). The answer to the last hop is returned
    whatever its status; raise ``AddressRefused``, ``TooManyRedirects``, ``ValueError`` (not an http(s)
    URL), ``OSError`` or ``http.client.HTTPException`` (the network)."""
    hops: list[str] = []
    current = url
    while True:
        hops.append(current)
        response = _request_once(
            current, method="POST", body=body, headers=headers, timeout=timeout, allow_private=allow_private,
            max_body=max_body, context=tls_context,
        )
        location = response.headers.get("location")
        if response.status not in REDIRECTS or not location:
            response.hops = hops
            return response
        if len(hops) > max_redirects:
            raise TooManyRedirects(f"more than {max_redirects} redirects from {url}")
        current = urljoin(current, location)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date), None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - clock.now()).total_seconds())
