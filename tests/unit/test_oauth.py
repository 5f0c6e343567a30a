"""OAUTHBEARER settings and the aiokafka token provider (against a local token endpoint)."""

from __future__ import annotations

import asyncio

import pytest

from streamproc.errors import ConfigError
from streamproc.oauth import ClientCredentialsTokenProvider, OAuthTokenError
from streamproc.settings import load_settings
from tests.oauth_server import token_endpoint

SECRET = "client-s3cret-never-logged"


def _oauth_settings(url: str, **extra: str) -> dict[str, str]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "OAUTHBEARER",
        "sasl_oauthbearer_token_endpoint_url": url,
        "sasl_oauthbearer_client_id": "streamproc-worker",
        "sasl_oauthbearer_client_secret": SECRET,
        **extra,
    }


def test_the_provider_reuses_a_token_until_most_of_its_lifetime_has_passed() -> None:
    now = [1000.0]
    with token_endpoint("streamproc-worker", SECRET, lifetime_s=100) as endpoint:
        provider = ClientCredentialsTokenProvider(
            endpoint.url, "streamproc-worker", SECRET, scope="kafka", clock=lambda: now[0]
        )
        first = asyncio.run(provider.token())
        now[0] += 79  # < 80% of 100 s
        assert asyncio.run(provider.token()) == first
        assert len(endpoint.grants) == 1
        now[0] += 2  # past 80%
        asyncio.run(provider.token())
    assert len(endpoint.grants) == 2
    assert endpoint.grants[0]["scope"] == "kafka"
    assert first.count(".") == 2 and SECRET not in repr(provider)


def test_the_provider_says_why_the_endpoint_refused() -> None:
    with token_endpoint("streamproc-worker", "another-secret") as endpoint:
        provider = ClientCredentialsTokenProvider(endpoint.url, "streamproc-worker", SECRET)
        with pytest.raises(OAuthTokenError, match=r"answered 401 \(invalid_client\)"):
            asyncio.run(provider.token())
        assert endpoint.refusals == 1
    with pytest.raises(OAuthTokenError, match="unreachable"):
        ClientCredentialsTokenProvider(endpoint.url, "x", "y", timeout_s=2).token_sync()


def test_oauthbearer_settings_reach_both_clients_and_hide_the_secret() -> None:
    settings = load_settings(
        **_oauth_settings("https://idp.example/token", sasl_oauthbearer_scope="kafka")
    )
    conf = settings.confluent_config()
    assert conf["sasl.mechanism"] == "OAUTHBEARER"
    assert conf["sasl.oauthbearer.method"] == "oidc"
    assert conf["sasl.oauthbearer.client.secret"] == SECRET
    assert conf["sasl.oauthbearer.scope"] == "kafka"
    assert "sasl.username" not in conf
    credentials = settings.faust_broker_credentials()
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    aiokafka = credentials_to_aiokafka_auth(credentials)
    assert aiokafka["sasl_mechanism"] == "OAUTHBEARER"
    assert aiokafka["security_protocol"] == "SASL_PLAINTEXT"
    assert isinstance(aiokafka["sasl_oauth_token_provider"], ClientCredentialsTokenProvider)
    assert SECRET not in repr(settings) and SECRET not in repr(credentials)
    assert settings.to_env()["STREAMPROC_SASL_OAUTHBEARER_CLIENT_SECRET"] == SECRET


def test_oauthbearer_without_its_client_credentials_is_refused_by_name() -> None:
    partial = _oauth_settings("https://idp.example/token")
    del partial["sasl_oauthbearer_client_secret"]
    with pytest.raises(ConfigError, match="STREAMPROC_SASL_OAUTHBEARER_CLIENT_SECRET"):
        load_settings(**partial)
    with pytest.raises(ConfigError, match="not an http"):
        load_settings(**_oauth_settings("idp.example/token"))
