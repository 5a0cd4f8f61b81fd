"""Addresses read as the errand CLI, the Rust client and the Go SDK read them.

An address without a port means errand's port, 7466: `Client("host")` and
ERRAND_SERVER=host dialled host:443 (gRPC's default), in plaintext.
"""

from __future__ import annotations

import pytest

from errand._common import connection


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("127.0.0.1", "127.0.0.1:7466"),
        ("localhost", "localhost:7466"),
        ("errand.internal", "errand.internal:7466"),
        ("127.0.0.1:9000", "127.0.0.1:9000"),
        ("[::1]", "[::1]:7466"),
        ("[::1]:9000", "[::1]:9000"),
        ("http://localhost", "localhost:7466"),
        ("http://localhost/", "localhost:7466"),
        ("HTTP://localhost:9000/", "localhost:9000"),
        ("http://[::1]", "[::1]:7466"),
        ("https://errand.example.com", "errand.example.com:7466"),
        ("https://errand.example.com:8443", "errand.example.com:8443"),
        ("grpc://localhost", "localhost:7466"),
        # gRPC target URIs pass as they are.
        ("dns:///errand.internal:9000", "dns:///errand.internal:9000"),
        ("unix:///tmp/errand.sock", "unix:///tmp/errand.sock"),
        ("unix:/tmp/errand.sock", "unix:/tmp/errand.sock"),
        ("ipv4:127.0.0.1:9000", "ipv4:127.0.0.1:9000"),
    ],
)
def test_an_address_without_a_port_means_7466(given: str, target: str) -> None:
    assert connection(given, token="").target == target


def test_errand_server_without_a_port_means_7466(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRAND_SERVER", "127.0.0.1")
    assert connection(None, token="").target == "127.0.0.1:7466"


def test_https_means_tls_whatever_the_case() -> None:
    assert connection("HTTPS://errand.example.com", token="").tls


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("::1", "[::1]:7466"),
        ("fe80::1:9000", "brackets"),
        ("ftp://errand.example.com", "http:// or https://"),
    ],
)
def test_what_the_cli_refuses_is_refused(given: str, says: str) -> None:
    with pytest.raises(ValueError, match=r".*") as info:
        connection(given, token="")
    assert says in str(info.value)
