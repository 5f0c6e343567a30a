"""A local OIDC token endpoint for tests: the client-credentials grant, answering unsigned JWTs
(what a Kafka broker's unsecured OAUTHBEARER validator accepts)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


def _b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_jwt(subject: str, lifetime_s: float, scope: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": subject, "iat": now, "exp": now + int(lifetime_s)}
    if scope:
        claims["scope"] = scope
    return f"{_b64url({'alg': 'none'})}.{_b64url(claims)}."


@dataclass
class TokenEndpoint:
    """Grants tokens to ``client_id``/``client_secret`` (HTTP Basic), 401 to anyone else."""

    client_id: str
    client_secret: str
    lifetime_s: float = 3600.0
    status: int = 200  # answer this instead of a token (e.g. 503: the identity provider is down)
    grants: list[dict[str, str]] = field(default_factory=list)  # one per token issued
    refusals: int = 0
    url: str = ""

    def answer(self, authorization: str, body: bytes, user_agent: str) -> tuple[int, bytes]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if self.status != 200:
            return self.status, b'{"error": "temporarily_unavailable"}'
        if authorization != f"Basic {expected}" or form.get("grant_type") != "client_credentials":
            self.refusals += 1
            return 401, b'{"error": "invalid_client"}'
        self.grants.append({**form, "user_agent": user_agent})
        token = unsigned_jwt(self.client_id, self.lifetime_s, form.get("scope"))
        answer = {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime_s}
        return 200, json.dumps(answer).encode()


@contextmanager
def token_endpoint(client_id: str, client_secret: str, **options: float) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(client_id, client_secret, **options)  # type: ignore[arg-type]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = endpoint.answer(
                self.headers.get("Authorization", ""), body, self.headers.get("User-Agent", "")
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/oauth2/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
