"""Sign-in through MSAL: client secret (from an environment variable), certificate, or device code.

How MSAL is called and how it behaves against another authority: docs/reference/graph-message-trace.md,
section 7. The secret is read from the environment only, never from the command line; nothing here logs or
returns it. A token cache, when kept, is a file readable by its owner only.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from analysis.pull.client import CONSENT_HINT, PERMISSION, PullError

# Entra ID error codes an admin meets at sign-in, and what to do (learn.microsoft.com/entra/identity-platform/
# reference-error-codes)
SIGN_IN_HINTS = {
    "AADSTS7000215": "the client secret is wrong: use the secret's Value (not its Secret ID) and check it has not "
                     "expired",
    "AADSTS7000222": "the client secret has expired: create a new one in the app registration",
    "AADSTS700016": "no app with this --client-id is registered in this tenant: check --client-id and --tenant",
    "AADSTS90002": "this --tenant does not exist: use the tenant ID (a GUID) or its onmicrosoft.com domain",
    "AADSTS700027": "the certificate assertion was refused: upload this certificate to the app registration "
                    "(Certificates & secrets) and check its thumbprint",
    "AADSTS65001": CONSENT_HINT,
    "AADSTS50105": "the signed-in user is not assigned to this app",
}


@dataclass(frozen=True)
class SignIn:
    """How to sign in: exactly one of ``secret_env``, ``certificate`` or ``device_code``."""

    tenant: str
    client_id: str
    secret_env: str | None = None
    certificate: str | None = None
    thumbprint: str | None = None
    device_code: bool = False


def token_cache_path(tenant: str, client_id: str) -> Path:
    """Where the token cache of a tenant + app is kept: under $XDG_CACHE_HOME (or ~/.cache), never in the output."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(f"{tenant}|{client_id}".encode()).hexdigest()[:16]
    return base / "exo-deferrals" / f"msal-{digest}.json"


def _credential(sign_in: SignIn) -> str | dict[str, str]:
    if sign_in.secret_env:
        secret = os.environ.get(sign_in.secret_env, "")
        if not secret.strip():
            raise PullError(f"the environment variable {sign_in.secret_env} (named by --client-secret-env) is not "
                            "set or empty: put the client secret there, never on the command line")
        return secret.strip()
    assert sign_in.certificate is not None
    path = Path(sign_in.certificate)
    try:
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PullError(f"{path}: cannot read the certificate PEM ({getattr(exc, 'strerror', None) or exc})") from None
    if "PRIVATE KEY-----" not in pem:
        raise PullError(f"{path}: no private key in the PEM (expected '-----BEGIN PRIVATE KEY-----' and the "
                        "certificate, e.g. from `openssl pkcs12 -in cert.pfx -nodes`)")
    key = _block(pem, "PRIVATE KEY")
    if sign_in.thumbprint:
        thumbprint = sign_in.thumbprint.replace(":", "").strip()
        if len(thumbprint) != 40 or any(c not in "0123456789abcdefABCDEF" for c in thumbprint):
            raise PullError(f"--certificate-thumbprint {sign_in.thumbprint!r}: expected the SHA-1 thumbprint as 40 "
                            "hexadecimal digits")
        return {"private_key": key, "thumbprint": thumbprint}
    if "-----BEGIN CERTIFICATE" not in pem:
        raise PullError(f"{path}: no certificate in the PEM: add it after the key or pass --certificate-thumbprint")
    return {"private_key": key, "public_certificate": _block(pem, "CERTIFICATE")}


def _block(pem: str, label: str) -> str:
    """The first PEM block whose label ends with ``label`` (``PRIVATE KEY`` matches ``RSA PRIVATE KEY``)."""
    for part in pem.split("-----BEGIN ")[1:]:
        name = part.split("-----", 1)[0]
        if name.endswith(label) and (label != "CERTIFICATE" or name == "CERTIFICATE"):
            end = f"-----END {name}-----"
            return "-----BEGIN " + part[: part.index(end) + len(end)] + "\n"
    raise PullError(f"no {label} block in the PEM")


class TokenSource:
    """Access tokens for Graph: ``source(refresh)`` returns one, renewed five minutes before it expires."""

    def __init__(self, sign_in: SignIn, *, login_url: str, graph_url: str, session: requests.Session,
                 cache_path: Path | None, prompt: Callable[[str], None] = print):
        import msal

        self.sign_in, self.prompt, self.cache_path = sign_in, prompt, cache_path
        scheme, host = urlsplit(graph_url)[:2]
        resource = f"{scheme}://{host}"
        self.scopes = [f"{resource}/{PERMISSION}"] if sign_in.device_code else [f"{resource}/.default"]
        self.msal_error = msal.exceptions.MsalError
        self.cache = msal.SerializableTokenCache()
        if cache_path is not None and cache_path.exists():
            os.chmod(cache_path, 0o600)
            self.cache.deserialize(cache_path.read_text())
        authority = f"{login_url.rstrip('/')}/{sign_in.tenant}"
        options = {"authority": authority, "token_cache": self.cache, "http_client": session,
                   "instance_discovery": False}
        try:
            if sign_in.device_code:
                self.app = msal.PublicClientApplication(sign_in.client_id, **options)
            else:
                self.app = msal.ConfidentialClientApplication(sign_in.client_id,
                                                              client_credential=_credential(sign_in), **options)
        except ValueError:  # MSAL could not read the authority's OpenID configuration
            raise PullError(f"the sign-in server {login_url} knows no tenant {sign_in.tenant!r}: "
                            f"{SIGN_IN_HINTS['AADSTS90002']} (and check --login-url)") from None
        except requests.exceptions.SSLError:
            raise PullError(f"{login_url}: the TLS certificate is not trusted (pass --ca-bundle for a private "
                            "CA)") from None
        except requests.RequestException as exc:
            raise PullError(f"cannot reach {login_url}: {type(exc).__name__}") from None
        self._token: str | None = None
        self._expires = 0.0

    def __call__(self, refresh: bool = False) -> str:
        if self._token is None or refresh or time.time() > self._expires - 300:
            self._acquire()
        assert self._token is not None
        return self._token

    def _acquire(self) -> None:
        try:
            result = self._device_code() if self.sign_in.device_code else self.app.acquire_token_for_client(
                scopes=self.scopes)
        except requests.exceptions.SSLError:
            raise PullError("the sign-in server's TLS certificate is not trusted (pass --ca-bundle)") from None
        except self.msal_error as exc:  # e.g. the token endpoint answered 5xx
            raise PullError(f"sign-in failed: {_first_line(exc)}") from None
        except requests.RequestException as exc:
            raise PullError(f"cannot reach the sign-in server: {type(exc).__name__}") from None
        if not result or "access_token" not in result:
            raise PullError(sign_in_error(result or {}))
        self._token = result["access_token"]
        self._expires = time.time() + float(result.get("expires_in", 3600))
        self._save_cache()

    def _device_code(self) -> dict:
        accounts = self.app.get_accounts()
        if accounts:
            result = self.app.acquire_token_silent(self.scopes, account=accounts[0])
            if result and "access_token" in result:
                return result
        flow = self.app.initiate_device_flow(scopes=self.scopes)
        if "user_code" not in flow:
            return flow
        self.prompt(flow["message"])
        return self.app.acquire_token_by_device_flow(flow)

    def _save_cache(self) -> None:
        if self.cache_path is None or not self.cache.has_state_changed:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(self.cache_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.chmod(self.cache_path, 0o600)  # an older file keeps its mode through O_CREAT
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self.cache.serialize())
        self.cache.has_state_changed = False


def sign_in_error(result: dict) -> str:
    """One line for a failed sign-in: the Entra error code, its first sentence and what to do."""
    code = str(result.get("error", "unknown error"))
    description = _first_line(result.get("error_description", ""))
    hint = next((text for key, text in SIGN_IN_HINTS.items() if key in description), "")
    if not hint and code == "invalid_client":
        hint = SIGN_IN_HINTS["AADSTS7000215"]
    if not hint and code in ("expired_token", "authorization_declined"):
        hint = "the device code was not used in time or was declined: run again and sign in at the address shown"
    return f"sign-in failed ({code}: {description})" + (f": {hint}" if hint else "")


def _first_line(text: object) -> str:
    return " ".join(str(text).split("\r\n")[0].split("\n")[0].split())[:240]
