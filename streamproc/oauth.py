"""SASL/OAUTHBEARER tokens for the worker's aiokafka clients (OIDC client credentials).

librdkafka (confluent-kafka: the tools and the at_least_once egress) fetches its own tokens
when given ``sasl.oauthbearer.method=oidc``; aiokafka (Faust's consumer and its transactional
producers) needs a token provider *object*. :class:`ClientCredentialsTokenProvider` is that
object, doing what librdkafka's OIDC method does: an RFC 6749 §4.4 client-credentials grant
against the token endpoint (client id and secret in HTTP Basic auth, ``scope`` if set), the
``access_token`` reused until shortly before it expires.

Faust's consumer runs aiokafka on its own thread and event loop, so the cache is guarded by a
thread lock and the HTTP request runs in a worker thread: it never blocks either loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from aiokafka.abc import AbstractTokenProvider

from streamproc import __version__
from streamproc.errors import BrokerError

__all__ = ["REFRESH_FRACTION", "ClientCredentialsTokenProvider", "OAuthTokenError"]

#: A token is renewed once this fraction of its lifetime has passed (librdkafka: 80%).
REFRESH_FRACTION = 0.8
#: Names this client to the identity provider (and tells its requests from librdkafka's).
USER_AGENT = f"streamproc/{__version__} (aiokafka OAUTHBEARER)"
#: Lifetime assumed when the endpoint names none (``expires_in`` is only RECOMMENDED).
DEFAULT_LIFETIME_S = 300.0


class OAuthTokenError(BrokerError):
    """The token endpoint refused the client's credentials or answered something unusable."""


class ClientCredentialsTokenProvider(AbstractTokenProvider):
    """Access tokens from an OIDC token endpoint by the client-credentials grant."""

    def __init__(
        self,
        token_endpoint_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_endpoint_url = token_endpoint_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def __repr__(self) -> str:  # never the secret
        return f"{type(self).__name__}({self.token_endpoint_url!r}, client_id={self.client_id!r})"

    async def token(self) -> str:
        """The cached token, or a new one once 80% of its lifetime has passed."""
        return await asyncio.to_thread(self.token_sync)

    def token_sync(self) -> str:
        with self._lock:  # one request at a time, whatever the loop or thread asking
            if self._token is None or self._clock() >= self._renew_at:
                requested = self._clock()
                self._token, lifetime_s = self._request()
                self._renew_at = requested + REFRESH_FRACTION * lifetime_s
            return self._token

    def _request(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        basic = base64.b64encode(f"{self.client_id}:{self._client_secret}".encode()).decode()
        request = urllib.request.Request(
            self.token_endpoint_url,
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            method="POST",
        )
        where = f"OAUTHBEARER token endpoint {self.token_endpoint_url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # the body may explain (RFC 6749 §5.2 ``error``)
            detail = _oauth_error(exc.read())
            raise OAuthTokenError(f"{where} answered {exc.code}{detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OAuthTokenError(f"{where} unreachable: {reason}") from None
        try:
            answer = json.loads(body)
            token = answer["access_token"]
            lifetime_s = float(answer.get("expires_in") or DEFAULT_LIFETIME_S)
        except (ValueError, TypeError, KeyError):
            raise OAuthTokenError(f"{where} answered no access_token in a JSON object") from None
        if not isinstance(token, str) or not token:
            raise OAuthTokenError(f"{where} answered an empty access_token")
        return token, lifetime_s


def _oauth_error(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return ""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return f" ({answer['error']})"
    return ""
