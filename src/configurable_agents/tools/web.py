"""`web_search` (Serper or Tavily) and `http_get`, over httpx."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config.tool_settings import HttpGetConfig, WebSearchConfig
from .errors import ToolError

if TYPE_CHECKING:
    import httpx
    from langchain_core.tools import BaseTool

__all__ = ["PROVIDERS", "make_http_get", "make_web_search", "search_provider"]

PROVIDERS = {
    "serper": ("SERPER_API_KEY", "https://google.serper.dev/search"),
    "tavily": ("TAVILY_API_KEY", "https://api.tavily.com/search"),
}
"""Search provider -> (environment variable of its API key, default search URL)."""


def search_provider(config: WebSearchConfig, env: Mapping[str, str], tool: str) -> tuple[str, str]:
    """The provider to use and its API key.

    Raises:
        ToolError: The needed API key is not set.
    """
    names = ["serper", "tavily"] if config.provider == "auto" else [config.provider]
    for name in names:
        key = env.get(PROVIDERS[name][0], "").strip()
        if key:
            return name, key
    variables = " or ".join(PROVIDERS[name][0] for name in names)
    raise ToolError(f"{tool} needs an API key: set {variables} in the environment")


def make_web_search(config: WebSearchConfig, env: Mapping[str, str], name: str) -> BaseTool:
    """Build `web_search` (or its alias ``name``); the API key is read from ``env`` now."""
    import httpx
    from langchain_core.tools import StructuredTool

    provider, key = search_provider(config, env, name)
    url = config.endpoint or PROVIDERS[provider][1]

    def web_search(query: str) -> str:
        """Search the web.

        Args:
            query: What to search for, as you would type it into a search engine.
        """
        if provider == "serper":
            headers = {"X-API-KEY": key}
            body: dict[str, Any] = {"q": query, "num": config.max_results}
        else:
            headers = {"Authorization": f"Bearer {key}"}
            body = {"query": query, "max_results": config.max_results}
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=config.timeout)
        except httpx.TimeoutException:
            raise ToolError(f"{name}: {provider} did not answer in {config.timeout} s") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"{name}: {provider} request failed: {exc}") from None
        if not response.is_success:
            raise ToolError(f"{name}: {provider} returned HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise ToolError(f"{name}: {provider} returned a reply that is not JSON") from None
        results = _compact(provider, data)[: config.max_results]
        return json.dumps(results, ensure_ascii=False)

    return StructuredTool.from_function(
        web_search,
        name=name,
        description="Search the web. Returns a JSON list of results with title, url and snippet.",
        parse_docstring=True,
    )


def _compact(provider: str, data: Any) -> list[dict[str, str]]:
    """The results of a Serper or Tavily reply as ``{title, url, snippet}`` mappings."""
    if not isinstance(data, dict):
        return []
    items = data.get("organic" if provider == "serper" else "results") or []
    url_key, text_key = ("link", "snippet") if provider == "serper" else ("url", "content")
    return [
        {
            "title": str(item.get("title", "")),
            "url": str(item.get(url_key, "")),
            "snippet": str(item.get(text_key, "")),
        }
        for item in items
        if isinstance(item, dict)
    ]


def make_http_get(config: HttpGetConfig) -> BaseTool:
    """Build the `http_get` tool; what it may fetch is decided by :mod:`.netguard`."""
    import httpx
    from langchain_core.tools import StructuredTool

    from .netguard import check_url, guarded_client, normal_host

    allowed = (
        None if config.allowed_hosts is None else frozenset(map(normal_host, config.allowed_hosts))
    )

    def http_get(url: str) -> str:
        """Fetch a URL with HTTP GET and return the body as text.

        Args:
            url: An http:// or https:// URL.
        """
        check_url("http_get", url, allowed)
        try:
            with (
                guarded_client("http_get", config.allowed_hosts, config.timeout) as client,
                client.stream("GET", url) as response,
            ):
                if not response.is_success:
                    raise ToolError(f"http_get: GET {url} returned HTTP {response.status_code}")
                return _read_capped(response, config.max_bytes)
        except httpx.TimeoutException:
            raise ToolError(f"http_get: GET {url} timed out after {config.timeout} s") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"http_get: GET {url} failed: {exc}") from None

    hosts = f" Only these hosts: {', '.join(sorted(allowed))}." if allowed else ""
    return StructuredTool.from_function(
        http_get,
        description="Fetch a web page or API URL (http or https) and return the response body "
        f"as text, cut off after {config.max_bytes} bytes. Addresses on the local machine or a "
        f"private network are refused unless listed.{hosts}",
        parse_docstring=True,
    )


def _read_capped(response: httpx.Response, max_bytes: int) -> str:
    """Read at most ``max_bytes`` of the (decoded) body; stop the download there."""
    chunks: list[bytes] = []
    size = 0
    truncated = False
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            truncated = True
            break
    data = b"".join(chunks)[:max_bytes]
    try:
        text = data.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # an unknown charset in Content-Type
        text = data.decode("utf-8", errors="replace")
    if truncated:
        text += f"\n[truncated: the body is longer than {max_bytes} bytes]"
    return text
