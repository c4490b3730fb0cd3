"""HTTP Signatures, checked against implementations nobody here wrote: `httpsig` (draft-cavage)
verifies what we sign and signs what we verify; `http-message-signatures` signs RFC 9421
requests for our verifier."""

import base64
import datetime
import hashlib
import json
from email.utils import format_datetime

import http_message_signatures as hms
import httpsig
import pytest

import fedsign

KEY_ID = "https://remote.example/users/ann#main-key"
INBOX = "https://local.example/user/bob/inbox"
BODY = json.dumps({"type": "Follow", "id": "https://remote.example/1"}).encode()


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return fedsign.new_key_pair()


@pytest.fixture(scope="module")
def other_keys() -> tuple[str, str]:
    return fedsign.new_key_pair()


def lookup(public_pem: str):
    return lambda key_id: public_pem if key_id == KEY_ID else None


def verify(headers, keys, *, body=BODY, method="POST", path="/user/bob/inbox"):
    return fedsign.verify_request(method, path, headers, body, lookup(keys[1]))


def test_key_pair_is_rsa_2048(keys):
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(keys[0].encode(), password=None)
    assert private.key_size == 2048
    assert keys[1].startswith("-----BEGIN PUBLIC KEY-----")


def test_httpsig_verifies_our_signature_with_body(keys):
    headers = fedsign.sign_request("POST", INBOX, key_id=KEY_ID, private_pem=keys[0], body=BODY)
    assert headers["Host"] == "local.example"
    assert (
        headers["Digest"] == "SHA-256=" + base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    )
    assert 'headers="(request-target) host date digest"' in headers["Signature"]
    verifier = httpsig.HeaderVerifier(
        headers,
        keys[1],
        required_headers=["(request-target)", "host", "date", "digest"],
        method="POST",
        path="/user/bob/inbox",
        sign_header="signature",
    )
    assert verifier.verify() is True
    tampered = httpsig.HeaderVerifier(
        headers, keys[1], method="POST", path="/user/eve/inbox", sign_header="signature"
    )
    assert tampered.verify() is False


def test_httpsig_verifies_our_get_with_port_and_query(keys):
    url = "http://127.0.0.2:8123/user/bob/outbox?page=2"
    headers = fedsign.sign_request("GET", url, key_id=KEY_ID, private_pem=keys[0])
    assert headers["Host"] == "127.0.0.2:8123"
    assert "Digest" not in headers
    verifier = httpsig.HeaderVerifier(
        headers, keys[1], method="GET", path="/user/bob/outbox?page=2", sign_header="signature"
    )
    assert verifier.verify() is True


def httpsig_signed(
    keys,
    *,
    covered=("(request-target)", "host", "date", "digest"),
    body=BODY,
    date=None,
    algorithm="rsa-sha256",
    path="/user/bob/inbox",
):
    headers = {
        "Host": "local.example",
        "Date": format_datetime(date or datetime.datetime.now(datetime.UTC), usegmt=True),
        "Content-Type": "application/activity+json",
    }
    if body is not None:
        headers["Digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    signer = httpsig.HeaderSigner(
        KEY_ID, keys[0], algorithm="rsa-sha256", headers=list(covered), sign_header="signature"
    )
    signed = signer.sign(headers, host="local.example", method="POST", path=path)
    if algorithm != "rsa-sha256":
        signed["signature"] = signed["signature"].replace(
            'algorithm="rsa-sha256"', f'algorithm="{algorithm}"'
        )
    return signed


def test_we_verify_httpsig_signatures(keys):
    assert verify(httpsig_signed(keys), keys) == KEY_ID


def test_hs2019_is_accepted(keys):
    assert verify(httpsig_signed(keys, algorithm="hs2019"), keys) == KEY_ID


def test_our_own_signatures_verify(keys):
    headers = fedsign.sign_request("POST", INBOX, key_id=KEY_ID, private_pem=keys[0], body=BODY)
    assert verify(headers, keys) == KEY_ID


def test_authorization_header_form_is_accepted(keys):
    headers = httpsig_signed(keys)
    headers["Authorization"] = "Signature " + headers.pop("signature")
    assert verify(headers, keys) == KEY_ID


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda h: h.pop("signature"), "not signed"),
        (lambda h: h.update(signature="garbage"), "cannot be parsed"),
        (
            lambda h: h.update(signature=h["signature"].replace('signature="', 'signature="é')),
            "base64",
        ),
        (
            lambda h: h.update(digest="SHA-256=" + base64.b64encode(b"x" * 32).decode()),
            "does not match",
        ),
        (lambda h: h.pop("digest"), "no SHA-256 Digest"),
        (lambda h: h.update(host="elsewhere.example"), "does not verify"),
    ],
)
def test_bad_signatures_are_refused(keys, change, reason):
    headers = httpsig_signed(keys)
    change(headers)
    with pytest.raises(fedsign.SignatureError, match=reason):
        verify(headers, keys)


def test_other_body_is_refused(keys):
    with pytest.raises(fedsign.SignatureError, match="does not match its Digest"):
        verify(httpsig_signed(keys), keys, body=BODY + b" ")


def test_wrong_key_is_a_key_mismatch(keys, other_keys):
    with pytest.raises(fedsign.KeyMismatch):
        verify(httpsig_signed(keys), other_keys)


def test_unknown_key_is_a_key_mismatch(keys):
    headers = httpsig_signed(keys)
    with pytest.raises(fedsign.KeyMismatch, match="unknown"):
        fedsign.verify_request("POST", "/user/bob/inbox", headers, BODY, lambda key_id: None)


@pytest.mark.parametrize("hours", [-2, 2])
def test_date_outside_the_window_is_refused(keys, hours):
    date = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours)
    with pytest.raises(fedsign.SignatureError, match="window"):
        verify(httpsig_signed(keys, date=date), keys)


@pytest.mark.parametrize(
    "covered, missing",
    [
        (("host", "date", "digest"), "(request-target)"),
        (("(request-target)", "host", "date"), "digest"),
        (("(request-target)", "date", "digest"), "host"),
        (("(request-target)", "host", "digest"), "date"),
    ],
)
def test_signature_must_cover_target_host_date_and_digest(keys, covered, missing):
    with pytest.raises(fedsign.SignatureError, match=f"does not cover.*{missing}"):
        verify(httpsig_signed(keys, covered=covered), keys)


def test_unsupported_algorithm_is_refused(keys):
    with pytest.raises(fedsign.SignatureError, match="algorithm"):
        verify(httpsig_signed(keys, algorithm="hmac-sha256"), keys)


def test_huge_signature_header_is_refused(keys):
    headers = httpsig_signed(keys)
    headers["signature"] += "," + 'x="' + "a" * 10000 + '"'
    with pytest.raises(fedsign.SignatureError, match="too long"):
        verify(headers, keys)


# --- RFC 9421, signed by http-message-signatures ----------------------------------------


class Request:
    def __init__(self, method, url, headers):
        self.method, self.url, self.headers = method, url, headers


def rfc9421_signed(
    keys,
    *,
    body=BODY,
    covered=("@method", "@target-uri"),
    created=None,
    algorithm=hms.algorithms.RSA_V1_5_SHA256,
):
    request = Request(
        "POST", INBOX, {"Host": "local.example", "Content-Type": "application/activity+json"}
    )
    resolver = hms.MappingKeyResolver(public_keys={}, private_keys={KEY_ID: keys[0].encode()})
    signer = hms.HTTPMessageSigner(signature_algorithm=algorithm, key_resolver=resolver)
    signer.sign(request, key_id=KEY_ID, covered_component_ids=covered, body=body, created=created)
    return request.headers


def test_rfc9421_signature_verifies(keys):
    assert verify(rfc9421_signed(keys), keys) == KEY_ID


def test_rfc9421_pss_signature_verifies(keys):
    headers = rfc9421_signed(keys, algorithm=hms.algorithms.RSA_PSS_SHA512)
    assert verify(headers, keys) == KEY_ID


def test_rfc9421_body_must_match_content_digest(keys):
    with pytest.raises(fedsign.SignatureError):
        verify(rfc9421_signed(keys), keys, body=BODY + b"!")


def test_rfc9421_wrong_key_is_a_key_mismatch(keys, other_keys):
    with pytest.raises(fedsign.KeyMismatch):
        verify(rfc9421_signed(keys), other_keys)


def test_rfc9421_old_signature_is_refused(keys):
    created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    with pytest.raises(fedsign.SignatureError) as caught:
        verify(rfc9421_signed(keys, created=created), keys)
    assert not isinstance(caught.value, fedsign.KeyMismatch)


def test_rfc9421_must_cover_method_and_target(keys):
    with pytest.raises(fedsign.SignatureError, match="method and target"):
        verify(rfc9421_signed(keys, covered=("@authority",)), keys)


def test_rfc9421_other_path_is_refused(keys):
    with pytest.raises(fedsign.KeyMismatch):
        verify(rfc9421_signed(keys), keys, path="/inbox")
