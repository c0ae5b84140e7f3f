"""login.py: the pieces of the sign-in that need no network (PKCE, the authorization URL)."""

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

from antigravity_gw.login import SCOPES, Pkce, authorization_url
from antigravity_gw.settings import Settings


def test_pkce_challenge_is_the_s256_of_the_verifier():
    pkce = Pkce.new()
    assert 43 <= len(pkce.verifier) <= 128
    digest = hashlib.sha256(pkce.verifier.encode()).digest()
    assert pkce.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert Pkce.new().verifier != pkce.verifier


def test_the_authorization_url_asks_for_offline_access_with_pkce_and_state():
    settings = Settings(oauth_client_id="cid", oauth_client_secret="secret", oauth_auth_url="https://a.example/auth")
    pkce = Pkce.new()
    url = authorization_url(settings, "http://127.0.0.1:5000/oauth-callback", "st", pkce)
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://a.example/auth"
    assert query == {"client_id": "cid", "redirect_uri": "http://127.0.0.1:5000/oauth-callback",
                     "response_type": "code", "scope": " ".join(SCOPES), "access_type": "offline",
                     "prompt": "consent", "include_granted_scopes": "true", "state": "st",
                     "code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    assert "secret" not in url and pkce.verifier not in url
