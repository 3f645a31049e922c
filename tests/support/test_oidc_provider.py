"""The loopback OpenID Connect provider completes a real code flow with Authlib as relying party."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .oidc import OidcProvider, OidcProviderError, httpx, login_via_http, oidc_provider_fixture

CALLBACK = "http://127.0.0.1:5000/auth/mos/callback"
OTHER_CALLBACK = "http://127.0.0.1:5001/auth/mos/callback"

mos = oidc_provider_fixture("mos", redirect_uris=[CALLBACK, OTHER_CALLBACK])


@dataclass
class Flow:
    """One authorization request as the relying party remembers it between redirects."""

    client: OAuth2Client
    metadata: dict[str, Any]
    url: str
    state: str
    nonce: str
    code_verifier: str


@pytest.fixture
def metadata(mos: OidcProvider) -> dict[str, Any]:
    return httpx.get(mos.metadata_url, timeout=5).raise_for_status().json()  # type: ignore[no-any-return]


@pytest.fixture
def rp(mos: OidcProvider) -> Iterator[OAuth2Client]:
    with OAuth2Client(
        client_id=mos.client_id,
        client_secret=mos.client_secret,
        scope="openid phone profile",
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
        timeout=5,
    ) as client:
        yield client


def start_flow(rp: OAuth2Client, metadata: dict[str, Any], **params: str) -> Flow:
    code_verifier = generate_token(48)
    nonce = secrets.token_urlsafe(16)
    url, state = rp.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce, **params
    )
    return Flow(rp, metadata, url, state, nonce, code_verifier)


def sign_in(flow: Flow, sub: str) -> str:
    with httpx.Client(timeout=5) as browser:
        return login_via_http(browser, flow.url, sub)


def finish_flow(flow: Flow, callback_url: str) -> dict[str, Any]:
    return dict(
        flow.client.fetch_token(
            flow.metadata["token_endpoint"],
            authorization_response=callback_url,
            state=flow.state,
            code_verifier=flow.code_verifier,
        )
    )


def validate_id_token(id_token: str, flow: Flow, client_id: str, *, nonce: str | None = None) -> dict[str, Any]:
    jwks = httpx.get(flow.metadata["jwks_uri"], timeout=5).raise_for_status().json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        leeway=5,
        iss={"essential": True, "value": flow.metadata["issuer"]},
        aud={"essential": True, "value": client_id},
        nonce={"essential": True, "value": nonce or flow.nonce},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(token.claims)
    return token.claims


def test_discovery_document_offers_code_flow_with_s256_and_phone_claims(
    mos: OidcProvider, metadata: dict[str, Any]
) -> None:
    assert metadata["issuer"] == mos.issuer
    assert mos.issuer.startswith("http://127.0.0.1:")
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert set(metadata["scopes_supported"]) == {"openid", "phone", "profile"}
    assert {"sub", "phone_number", "phone_number_verified", "name"} <= set(metadata["claims_supported"])
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]


def test_code_flow_with_pkce_gives_valid_id_token_and_phone_from_userinfo(
    mos: OidcProvider, rp: OAuth2Client, metadata: dict[str, Any]
) -> None:
    flow = start_flow(rp, metadata)
    query = parse_qs(urlsplit(flow.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"] == [flow.nonce]

    callback_url = sign_in(flow, "mos-1001")

    assert callback_url.startswith(CALLBACK + "?")
    params = parse_qs(urlsplit(callback_url).query)
    assert params["state"] == [flow.state]
    assert params["iss"] == [mos.issuer]  # RFC 9207 mix-up defence
    token = finish_flow(flow, callback_url)
    claims = validate_id_token(token["id_token"], flow, mos.client_id)
    assert claims["sub"] == "mos-1001"
    userinfo = rp.get(metadata["userinfo_endpoint"]).raise_for_status().json()
    assert userinfo == {
        "sub": "mos-1001",
        "phone_number": "+79161234567",
        "phone_number_verified": True,
        "name": "Иван Петров",
    }


def test_account_without_phone_gets_no_phone_number_from_userinfo(
    mos: OidcProvider, rp: OAuth2Client, metadata: dict[str, Any]
) -> None:
    flow = start_flow(rp, metadata)
    token = finish_flow(flow, sign_in(flow, "mos-1002"))
    assert validate_id_token(token["id_token"], flow, mos.client_id)["sub"] == "mos-1002"
    userinfo = rp.get(metadata["userinfo_endpoint"]).raise_for_status().json()
    assert userinfo == {"sub": "mos-1002"}


def test_wrong_pkce_verifier_is_rejected_at_token_endpoint(rp: OAuth2Client, metadata: dict[str, Any]) -> None:
    flow = start_flow(rp, metadata)
    callback_url = sign_in(flow, "mos-1001")
    flow.code_verifier = generate_token(48)
    with pytest.raises(OAuthError) as caught:
        finish_flow(flow, callback_url)
    assert caught.value.error == "invalid_grant"


def test_authorization_without_pkce_is_refused(mos: OidcProvider, metadata: dict[str, Any]) -> None:
    with OAuth2Client(mos.client_id, mos.client_secret, scope="openid", redirect_uri=CALLBACK) as plain_rp:
        url, _state = plain_rp.create_authorization_url(metadata["authorization_endpoint"])
    with httpx.Client(timeout=5) as browser:
        response = browser.get(url, follow_redirects=False)
    assert response.is_redirect
    params = parse_qs(urlsplit(response.headers["location"]).query)
    assert params["error"] == ["invalid_request"]
    assert "PKCE" in params["error_description"][0]


def test_id_token_for_another_nonce_fails_validation(
    mos: OidcProvider, rp: OAuth2Client, metadata: dict[str, Any]
) -> None:
    flow = start_flow(rp, metadata)
    token = finish_flow(flow, sign_in(flow, "mos-1001"))
    with pytest.raises(JoseError):
        validate_id_token(token["id_token"], flow, mos.client_id, nonce="replayed")
    with pytest.raises(JoseError):
        validate_id_token(token["id_token"], flow, "some-other-client")


def test_unknown_login_is_refused_on_login_page(rp: OAuth2Client, metadata: dict[str, Any]) -> None:
    flow = start_flow(rp, metadata)
    with pytest.raises(OidcProviderError, match="400"):
        sign_in(flow, "mos-9999")


def test_cancelled_sign_in_returns_access_denied_to_callback(
    mos: OidcProvider, rp: OAuth2Client, metadata: dict[str, Any]
) -> None:
    flow = start_flow(rp, metadata)
    with httpx.Client(timeout=5) as browser:
        callback_url = mos.login_via_http(browser, flow.url, "mos-1001", approve=False)
    params = parse_qs(urlsplit(callback_url).query)
    assert callback_url.startswith(CALLBACK + "?")
    assert params["error"] == ["access_denied"]
    assert params["state"] == [flow.state]


def test_second_registered_redirect_uri_is_accepted(rp: OAuth2Client, metadata: dict[str, Any]) -> None:
    flow = start_flow(rp, metadata, redirect_uri=OTHER_CALLBACK)
    assert sign_in(flow, "mos-1002").startswith(OTHER_CALLBACK + "?")


def test_unregistered_redirect_uri_is_not_redirected_to(rp: OAuth2Client, metadata: dict[str, Any]) -> None:
    flow = start_flow(rp, metadata, redirect_uri="http://127.0.0.1:5999/auth/mos/callback")
    with httpx.Client(timeout=5) as browser:
        response = browser.get(flow.url, follow_redirects=False)
    assert response.status_code == 400
    assert "redirect_uri" in response.text


def test_any_loopback_port_client_accepts_callback_on_ephemeral_port(tmp_path: Path) -> None:
    with OidcProvider(tmp_path, redirect_uris=["http://127.0.0.1/cb"], any_loopback_port=True) as provider:
        metadata = httpx.get(provider.metadata_url, timeout=5).raise_for_status().json()
        callback = "http://127.0.0.1:54321/cb"
        with OAuth2Client(
            provider.client_id,
            provider.client_secret,
            scope="openid phone",
            redirect_uri=callback,
            code_challenge_method="S256",
            timeout=5,
        ) as client:
            flow = start_flow(client, metadata)
            callback_url = sign_in(flow, "mos-1001")
            assert callback_url.startswith(callback + "?")
            token = finish_flow(flow, callback_url)
        assert validate_id_token(token["id_token"], flow, provider.client_id)["sub"] == "mos-1001"


def test_stop_ends_the_provider_process(tmp_path: Path) -> None:
    provider = OidcProvider(tmp_path)
    provider.stop()
    assert provider.process.returncode is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(provider.metadata_url, timeout=2)
