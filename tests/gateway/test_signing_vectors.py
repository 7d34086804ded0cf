"""The published request-signing vectors (docs/signing_vectors.json, SECURITY.md): the gateway
accepts each one over HTTP, sent byte for byte, and refuses it with one byte changed; the client
package signs each one the same way."""

from __future__ import annotations

import http.client
import inspect
import json
import types

import pytest

import i2v_client.signing
from gateway.edge.signing import canonical_request, signature
from i2v_tools import REPO_ROOT

VECTORS = json.loads((REPO_ROOT / "docs" / "signing_vectors.json").read_text(encoding="utf-8"))["vectors"]
[SECRET] = {vector["secret"] for vector in VECTORS}  # one gateway checks them all
IDS = [vector["name"] for vector in VECTORS]


def body_of(vector: dict) -> bytes:
    return vector["body"].encode()


def test_the_vectors_cover_what_the_spec_names() -> None:
    assert any(not v["body"] for v in VECTORS) and any(v["body"] for v in VECTORS)
    assert any(v["query"].count("&") >= 2 for v in VECTORS)
    assert any("%" in v["path"] and v["path"] != v["signed_path"] for v in VECTORS)
    assert any(not v["body"].isascii() and not v["signed_path"].isascii() for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_the_gateway_builds_each_canonical_string(vector: dict) -> None:
    canonical = canonical_request(vector["method"], vector["signed_path"], vector["query"], vector["timestamp"],
                                  vector["nonce"], body_of(vector))
    assert canonical == vector["canonical"].encode()
    assert signature(vector["secret"], canonical) == vector["headers"]["X-Signature"]
    assert vector["body_sha256"] == vector["canonical"].rsplit("\n", 1)[1]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_the_client_signs_each_vector_alike(vector: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client draws a fresh nonce per call; the vector's is fixed (without editing the client).
    monkeypatch.setattr(i2v_client.signing, "secrets", types.SimpleNamespace(token_urlsafe=lambda _: vector["nonce"]))
    arguments = dict(secret=vector["secret"], method=vector["method"], path=vector["signed_path"],
                     query=vector["query"], body=body_of(vector), now=float(vector["timestamp"]))
    if "nonce" in inspect.signature(i2v_client.signing.signature_headers).parameters:
        arguments["nonce"] = vector["nonce"]
    assert i2v_client.signing.signature_headers(**arguments) == vector["headers"]


@pytest.fixture(scope="module")
def vector_gateway(start_gateway):
    # The vectors carry fixed timestamps (2026-01-01): a window of a century lets the real
    # verifier check them. Without workers an accepted job or cancel touches nothing.
    return start_gateway({"I2V_REQUEST_SIGNING_SECRET": SECRET, "I2V_REQUEST_SIGNING_WINDOW_S": str(100 * 365 * 86400),
                          "I2V_JOB_WORKERS": "0", "I2V_RATE_LIMIT_PER_MINUTE": "0"})


def send(gateway, vector: dict, path: str, query: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """The request exactly as the vector spells it: http.client sends the path and query unchanged
    (httpx and requests would re-encode them)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.request(vector["method"], path + (f"?{query}" if query else ""), body=body or None,
                           headers={"Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json",
                                    **headers})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def one_byte_changed(vector: dict) -> tuple[str, str, bytes]:
    """(path, query, body) with one byte changed where the request still reaches the signature
    check: the first byte of the body's first string value (FastAPI answers a body that is not
    JSON with 422 before any dependency runs), else the query's last byte, else the path's last
    byte when it names a job (a changed route would be 404 before the check)."""
    path, query, body = vector["path"], vector["query"], body_of(vector)
    if body:
        at = body.index(b':"') + 2
        return path, query, body[:at] + bytes([body[at] ^ 1]) + body[at + 1:]
    if query:
        return path, query[:-1] + chr(ord(query[-1]) ^ 1), body
    if path.startswith("/api/v1/jobs/"):
        return path[:-1] + chr(ord(path[-1]) ^ 1), query, body
    return path, "x", body  # an empty query became one byte long


@pytest.mark.integration
@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_the_gateway_accepts_each_vector_and_refuses_a_one_byte_change(vector_gateway, vector: dict) -> None:
    path, query, body = one_byte_changed(vector)
    status, answer = send(vector_gateway, vector, path, query, body, vector["headers"])
    assert status == 401 and "does not match" in answer["message"], (status, answer)
    # The refused request did not use up the nonce, so the genuine one still passes: past the
    # signature, a list is 200, a job without an image 422, an unknown job 404.
    status, answer = send(vector_gateway, vector, vector["path"], vector["query"], body_of(vector), vector["headers"])
    assert status in (200, 404, 422), (status, answer)


@pytest.mark.integration
@pytest.mark.parametrize("timestamp", ["nan", "inf", "yesterday"])
def test_a_timestamp_that_is_not_a_time_is_refused_even_when_signed(vector_gateway, timestamp: str) -> None:
    # float("nan") compares false with everything: it used to pass the window check, so such a
    # request could be replayed forever once its nonce was forgotten.
    vector = VECTORS[0]
    nonce = f"nonce-{timestamp}-time"
    canonical = canonical_request(vector["method"], vector["signed_path"], vector["query"], timestamp, nonce, b"")
    headers = {"X-Signature-Timestamp": timestamp, "X-Signature-Nonce": nonce,
               "X-Signature": signature(SECRET, canonical)}
    status, answer = send(vector_gateway, vector, vector["path"], vector["query"], b"", headers)
    assert status == 401 and "Unix seconds" in answer["message"], (status, answer)
