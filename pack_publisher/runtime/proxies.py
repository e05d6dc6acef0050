"""Which proxy a URL goes through, decided from a snapshot of the proxy variables (no environment reads).

Hand-written because the usual helpers (`urllib.request.getproxies`, requests) decide from `os.environ`
at request time, and nothing below the settings may read the environment (the settings pass the
variables they read, see `PublishOptions.proxy_env`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


def proxies_for(url: str, proxy_env: Mapping[str, str]) -> dict[str, str]:
    """The proxy for `url` as a `{scheme: proxy URL}` mapping (empty: none), decided from `proxy_env` alone.

    `https_proxy` or `http_proxy` by the URL's scheme, else `all_proxy`. Of two spellings of one variable
    the lower-case one wins when it is set, even empty (which turns that proxy off), as in curl and
    requests. `no_proxy` is a comma-separated list of `*`, host names (each also covering its subdomains;
    a leading `.` or `*.` is allowed), IP addresses or CIDR ranges, each optionally with `:port`.
    """
    parts = urlsplit(url)
    proxy = _variable(proxy_env, f"{parts.scheme}_proxy") or _variable(proxy_env, "all_proxy")
    if not proxy or _bypassed(parts, _variable(proxy_env, "no_proxy")):
        return {}
    return {parts.scheme: proxy}


def _variable(env: Mapping[str, str], lower_name: str) -> str:
    value = env.get(lower_name)
    return (value if value is not None else env.get(lower_name.upper(), "")).strip()


def _bypassed(url: SplitResult, no_proxy: str) -> bool:
    host = (url.hostname or "").lower()
    port = url.port or (443 if url.scheme == "https" else 80)
    for entry in filter(None, (item.strip().lower() for item in no_proxy.split(","))):
        if entry == "*":
            return True
        if entry.startswith("["):  # [v6 address] or [v6 address]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":")
        elif entry.count(":") == 1:  # host:port (a bare v6 address has several colons)
            name, _, entry_port = entry.partition(":")
        else:
            name, entry_port = entry, ""
        if entry_port and entry_port != str(port):
            continue
        if _host_matches(host, name.removeprefix("*").removeprefix(".")):
            return True
    return False


def _host_matches(host: str, name: str) -> bool:
    try:
        network = ipaddress.ip_network(name, strict=False)
    except ValueError:
        return bool(name) and (host == name or host.endswith("." + name))
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == network.version and address in network
