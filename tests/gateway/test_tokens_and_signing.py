"""JWT bearer tokens and HMAC-signed requests over HTTP against the real gateway."""

from __future__ import annotations

import base64
import json
import secrets
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from i2v_client import I2VClient
from i2v_client.errors import AuthenticationError
from i2v_client.signing import signature_headers
from tests.gateway.test_api import body as generate_body
from tests.support.media import gradient_png

pytestmark = pytest.mark.integration
HS_SECRET = "jwt-test-secret-that-is-long-enough-0123456789"
SIGNING_SECRET = "signing-secret-0123456789abcdef"
CLAIMS = {"sub": "alice", "aud": "i2v-api", "iss": "https://auth.example.com"}
JWT_ENV = {"I2V_JWT_AUDIENCE": "i2v-api", "I2V_JWT_ISSUER": "https://auth.example.com", "I2V_JWT_LEEWAY_S": "30",
           "I2V_JOB_WORKERS": "0", "I2V_RATE_LIMIT_PER_MINUTE": "0"}


def pem(public_key) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def hs_gateway(start_gateway, rsa_key, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("jwt") / "public.pem"
    key_file.write_text(pem(rsa_key.public_key()))
    return start_gateway({**JWT_ENV, "I2V_JWT_SECRET": HS_SECRET, "I2V_JWT_PUBLIC_KEY_FILE": str(key_file)})


def token(key=HS_SECRET, algorithm: str = "HS256", **changes) -> str:
    now = int(time.time())
    claims = {**CLAIMS, "iat": now, "exp": now + 300, **changes}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)


def call(gateway, bearer: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/api/v1/jobs", headers={"Authorization": f"Bearer {bearer}"})


def test_valid_jwts_are_accepted(hs_gateway, rsa_key) -> None:
    assert call(hs_gateway, token()).status_code == 200
    assert call(hs_gateway, token(rsa_key, "RS256")).status_code == 200
    # Expired 10 s ago, inside the 30 s leeway for clock skew.
    assert call(hs_gateway, token(exp=int(time.time()) - 10)).status_code == 200
    # An API key still works beside JWTs.
    assert call(hs_gateway, hs_gateway.token).status_code == 200


# Times as offsets from when the test runs (not from collection, minutes earlier).
@pytest.mark.parametrize(("changes", "fragment"), [
    ({"exp": -120}, "expired"),
    ({"nbf": +120}, "not valid yet"),
    ({"aud": "another-api"}, "audience"),
    ({"iss": "https://evil.example.com"}, "issuer"),
    ({"exp": None}, "'exp'"),
    ({"sub": None}, "'sub'"),
])
def test_invalid_claims_are_refused(hs_gateway, changes: dict, fragment: str) -> None:
    now = int(time.time())
    changes = {claim: now + value if claim in ("exp", "nbf") and value is not None else value
               for claim, value in changes.items()}
    response = call(hs_gateway, token(**changes))
    assert response.status_code == 401 and fragment in response.json()["message"], response.text


def test_forged_jwts_are_refused(hs_gateway, rsa_key) -> None:
    assert "signature" in call(hs_gateway, token(key="another-secret-of-enough-length-0123456789")).json()["message"]
    unsigned = jwt.encode({**CLAIMS, "exp": int(time.time()) + 60}, None, algorithm="none")
    assert call(hs_gateway, unsigned).status_code == 401
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert call(hs_gateway, token(other_rsa, "RS256")).status_code == 401
    # Algorithm confusion: HS256 "signed" with the public key as the secret.
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=")
    assert call(hs_gateway, header.decode() + ".e30.c2ln").status_code == 401


def test_a_jwt_callers_usage_is_filed_under_its_subject(hs_gateway) -> None:
    """Two synchronous videos (the second from the result cache) by subject "carol": her usage
    has both, under jwt:carol; another subject's is empty."""
    seed = secrets.randbelow(2**31)  # a video no other test made, so the first call runs the model
    carol = {"Authorization": f"Bearer {token(sub='carol')}"}
    with httpx.Client(base_url=hs_gateway.url, timeout=300) as api:
        for _ in range(2):
            made = api.post("/api/v1/generate", json=generate_body(seed=seed), headers=carol)
            assert made.status_code == 200, made.text
        usage = api.get("/api/v1/usage", headers=carol).json()
        assert usage["key"] == "jwt:carol" and usage["quotas"] == []
        width, height = 256, 256  # 256p
        assert {name: usage["totals"][name] for name in ("requests", "videos", "frames", "cache_hits", "failed")} \
            == {"requests": 2, "videos": 2, "frames": 16, "cache_hits": 1, "failed": 0}
        assert usage["totals"]["compute_units"] == round(2 * 8 * width * height / 1e6, 6)  # the one that ran
        assert usage["totals"]["model_seconds"] > 0
        other = api.get("/api/v1/usage", headers={"Authorization": f"Bearer {token(sub='dave')}"}).json()
        assert other["key"] == "jwt:dave" and other["totals"]["videos"] == 0 and other["days"] == []


def test_es256_and_the_log(start_gateway) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    gateway = start_gateway({**JWT_ENV, "I2V_JWT_PUBLIC_KEY": pem(key.public_key())})
    good = token(key, "ES256")
    assert call(gateway, good).status_code == 200
    assert call(gateway, token()).status_code == 401, "HS256 is off without I2V_JWT_SECRET"
    log = gateway.log_path.read_text()
    assert "key=jwt:alice" in log and good not in log


@pytest.fixture(scope="module")
def signed_gateway(start_gateway):
    return start_gateway({"I2V_REQUEST_SIGNING_SECRET": SIGNING_SECRET, "I2V_JOB_WORKERS": "0",
                          "I2V_RATE_LIMIT_PER_MINUTE": "0"})


def signed_post(gateway, payload: bytes, headers: dict | None = None, secret: str = SIGNING_SECRET,
                now: float | None = None) -> httpx.Response:
    signed = headers or signature_headers(secret, "POST", "/api/v1/jobs", "", payload, now=now)
    return httpx.post(f"{gateway.url}/api/v1/jobs", content=payload,
                      headers={"Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json",
                               **signed})


def job_body() -> bytes:
    return json.dumps({"image_base64": base64.b64encode(gradient_png((64, 64))).decode(), "prompt": "a cat",
                       "resolution": "256p", "num_frames": 8, "steps": 1}).encode()


def test_signed_requests_pass_and_replays_are_refused(signed_gateway) -> None:
    payload = job_body()
    headers = signature_headers(SIGNING_SECRET, "POST", "/api/v1/jobs", "", payload)
    assert signed_post(signed_gateway, payload, headers).status_code == 202
    replay = signed_post(signed_gateway, payload, headers)
    assert replay.status_code == 401 and "replays are refused" in replay.json()["message"]


@pytest.mark.parametrize(("case", "fragment"), [
    ("unsigned", "requires signed requests"),
    ("old", "window"),
    ("wrong secret", "does not match"),
    ("tampered body", "does not match"),
])
def test_bad_signatures_are_refused(signed_gateway, case: str, fragment: str) -> None:
    payload = job_body()
    if case == "unsigned":
        response = httpx.post(f"{signed_gateway.url}/api/v1/jobs", content=payload,
                              headers={"Authorization": f"Bearer {signed_gateway.token}"})
    elif case == "old":
        response = signed_post(signed_gateway, payload, now=time.time() - 600)
    elif case == "wrong secret":
        response = signed_post(signed_gateway, payload, secret="another-signing-secret-0123")
    else:
        headers = signature_headers(SIGNING_SECRET, "POST", "/api/v1/jobs", "", payload)
        response = signed_post(signed_gateway, payload.replace(b"a cat", b"a dog"), headers)
    assert response.status_code == 401 and fragment in response.json()["message"], response.text


def test_the_python_client_signs(signed_gateway) -> None:
    client = I2VClient(signed_gateway.url, token=signed_gateway.token, signing_secret=SIGNING_SECRET)
    job = client.submit_job(gradient_png((64, 64)), "a cat", resolution="256p", num_frames=8, steps=1)
    assert client.get_job(job["job_id"])["status"] == "queued"
    assert client.list_jobs(limit=5)["jobs"][0]["job_id"] == job["job_id"]
    with pytest.raises(AuthenticationError):
        I2VClient(signed_gateway.url, token=signed_gateway.token).list_jobs()
    assert httpx.get(f"{signed_gateway.url}/healthz").status_code == 200  # probes need no signature


def test_a_replay_to_another_replica_on_one_redis_is_refused(start_gateway, new_redis_url) -> None:
    shared = {"I2V_REQUEST_SIGNING_SECRET": SIGNING_SECRET, "I2V_REDIS_URL": new_redis_url(), "I2V_JOB_WORKERS": "0",
              "I2V_RATE_LIMIT_PER_MINUTE": "0"}
    first, second = start_gateway(shared), start_gateway(shared)
    payload = job_body()
    headers = signature_headers(SIGNING_SECRET, "POST", "/api/v1/jobs", "", payload)
    assert signed_post(first, payload, headers).status_code == 202
    replay = signed_post(second, payload, headers)
    assert replay.status_code == 401 and "replays are refused" in replay.json()["message"], replay.text
