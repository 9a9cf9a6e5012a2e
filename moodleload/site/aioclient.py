"""The load's HTTP client interface on aiohttp (``--http-client aiohttp``, and where
httptools is missing): the peer the lean client is measured against."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from moodleload.site.httpclient import (
    DEFAULT_MAX_BODY,
    Authorization,
    BodyTooLarge,
    Form,
    HttpError,
    Reply,
    encode_body,
    unreachable,
)


class AiohttpClient:
    """``HttpClient``'s interface on aiohttp: one ClientSession and pool, no cookie jar
    (cookies are per user, kept by each Session)."""

    def __init__(self, *, insecure: bool, user_agent: str, max_body: int = DEFAULT_MAX_BODY,
                 authorization: Authorization | None = None):
        import aiohttp

        self._aiohttp = aiohttp
        self._max_body = max_body
        self._authorization = authorization
        connector = aiohttp.TCPConnector(limit=0, ssl=not insecure, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                              headers={"User-Agent": user_agent})

    async def request(self, method: str, url: str, cookie: str | None, form: Form | None,
                      timeout: float) -> Reply:
        aiohttp = self._aiohttp
        headers = {"Cookie": cookie} if cookie else {}
        data = None
        if form is not None:
            data, content_type, extra = encode_body(form)
            headers["Content-Type"] = content_type
            headers.update(extra)
        if self._authorization is not None:
            parts = urlsplit(url)
            if (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)) \
                    == self._authorization[0]:
                headers["Authorization"] = self._authorization[1]
        try:
            limit = aiohttp.ClientTimeout(total=timeout)
            async with self._session.request(method, url, data=data, headers=headers or None,
                                             allow_redirects=False, timeout=limit) as response:
                # Read as it is decoded, chunk by chunk, so a compression bomb stops at the limit.
                chunks, size = [], 0
                while True:
                    chunk = await response.content.readany()
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > self._max_body:
                        response.close()
                        raise BodyTooLarge(f"the body is over {self._max_body // 1048576} MB")
                    chunks.append(chunk)
                return Reply(response.status, response.headers.get("Location", ""),
                             response.headers.getall("Set-Cookie", []), b"".join(chunks))
        except (asyncio.TimeoutError, HttpError):
            raise
        except aiohttp.ClientConnectorError as error:
            raise unreachable(error.host, error.port, error.os_error) from None
        except aiohttp.ClientError as error:
            raise HttpError(str(error) or type(error).__name__) from None
        except (OSError, ValueError) as error:
            raise HttpError(getattr(error, "strerror", None) or str(error)) from None

    async def close(self) -> None:
        await self._session.close()
