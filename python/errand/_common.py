"""Pieces shared by the sync and asyncio clients and the worker (not public)."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import random
import re
import ssl
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import grpc
import grpc.aio

from errand._jsonable import dumps, encode
from errand.errors import InvalidArgument
from errand.types import DedupPolicy, DeliveryPolicy, Fallback, to_enum
from errand.v1 import errand_pb2 as pb

#: Used when neither `target=` nor the ERRAND_SERVER environment variable is given.
DEFAULT_TARGET = "127.0.0.1:7466"

#: ToolService calls that fail with UNAVAILABLE (the connection broke under
#: them) are retried by gRPC itself. That is safe for SubmitTool too: every
#: submit carries an idempotency key (a random one unless the caller gives
#: one), so a retried submit returns the first task instead of a second one.
SERVICE_CONFIG = dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "errand.v1.ToolService"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    },
    "the service config",
)

#: The most bytes one message may take either way on this SDK's channels:
#: the largest `--max-message-bytes` a server accepts (1 GiB), so that every
#: server's limit, which it says in Registered.max_message_bytes and keeps
#: its own messages within, is the one that applies. It was 16 MiB: a
#: server set higher delivered completions the SDK refused.
MAX_SEND_MESSAGE_BYTES = 1 << 30

#: Channel settings: reconnect quickly after a server restart (gRPC's default
#: backoff grows to two minutes), retry calls cut by a broken connection,
#: notice dead connections through keepalive (a ping every 20 s, a
#: connection whose ping goes 10 s unanswered is closed: both
#: `keepalive_timeout_ms` and `http2.ping_timeout_ms`, whose default of a
#: minute otherwise decides, so a frozen server went unnoticed for 80 s),
#: and allow the server's largest
#: message. Each channel keeps its own connections: a new channel (a worker's
#: next attempt, a new client) connects afresh instead of inheriting another
#: channel's failure and backoff. `grpc.min_reconnect_backoff_ms` stays
#: unset: gRPC takes it as the least time one connection attempt is given
#: (20 s unset), and at 100 ms a server slower than that to answer its
#: HTTP/2 handshake (starting on a large store, far away over TLS) failed the
#: attempt, so a first call or a worker's start said "no errand server"; the
#: first connect is bounded by `connect_timeout` instead.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", MAX_SEND_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
]

#: The port of an address that names none: errand's.
DEFAULT_PORT = 7466

#: Schemes of gRPC target URIs, which pass as they are ("dns:///host:port",
#: "unix:/path", "ipv4:127.0.0.1:9000", ...).
_GRPC_SCHEMES = ("dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock", "xds")


def resolve_target(target: Optional[str]) -> str:
    """HOST:PORT from `target`, else $ERRAND_SERVER, read as the `errand` CLI
    (and the Go SDK) read addresses: "host:port", "host" (port 7466), "[v6]"
    or "[v6]:port", each optionally as an http://, https:// or grpc:// URL
    (any case) with a trailing "/". A gRPC target URI passes as it is. An
    IPv6 address without brackets, or a URL of another scheme, is a
    ValueError saying what to write instead."""
    value = target or os.environ.get("ERRAND_SERVER") or DEFAULT_TARGET
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme.lower() in _GRPC_SCHEMES:
            return value
        if scheme.lower() not in ("http", "https", "grpc"):
            raise ValueError(
                f"address {value!r}: give host:port, or a URL with http:// or https://"
            )
        value = rest
    else:
        scheme, sep, rest = value.partition(":")
        if sep and scheme.lower() in _GRPC_SCHEMES and not rest.isdigit():
            return value
    value = value.rstrip("/")
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError(f"address {value!r}: no closing ]")
        return value + f":{DEFAULT_PORT}" if end == len(value) - 1 else value
    colons = value.count(":")
    if colons == 0:
        return f"{value}:{DEFAULT_PORT}"
    if colons == 1:
        return value + str(DEFAULT_PORT) if value.endswith(":") else value
    try:
        ipaddress.IPv6Address(value)
        hint = f"[{value}]:{DEFAULT_PORT}"
    except ValueError:
        hint = "[ADDRESS]:PORT"
    raise ValueError(f"address {value!r}: an IPv6 address goes in brackets, as {hint}")


#: A file path as the TLS arguments take it.
PathLike = Union[str, "os.PathLike[str]"]
Metadata = Sequence[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class Connection:
    """How to reach a server: the address, TLS credentials, channel options and
    the metadata every call carries (the bearer token among it)."""

    target: str
    credentials: Optional[grpc.ChannelCredentials]
    options: tuple[tuple[str, Any], ...]
    metadata: tuple[tuple[str, str], ...]
    #: The CA and client certificate files given, for errors that name them.
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None

    @property
    def tls(self) -> bool:
        return self.credentials is not None

    def channel(self) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(self.target, options=self.options)
        return grpc.secure_channel(self.target, self.credentials, options=self.options)

    def aio_channel(self) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target, options=self.options)
        return grpc.aio.secure_channel(self.target, self.credentials, options=self.options)


def _setting(value: Optional[Any], env: str) -> Optional[Any]:
    """An explicit argument wins ("" switches the setting off); None falls back to $env."""
    if value is None:
        value = os.environ.get(env) or None
    return value or None


def _read(path: PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {os.fspath(path)!r}: {exc}") from exc


_CERT_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----"
)


def _certificates(pem: bytes) -> list[bytes]:
    """The DER certificates in `pem` (none for a key or an empty file)."""
    found = []
    for block in _CERT_BLOCK.findall(pem):
        try:
            found.append(base64.b64decode(b"".join(block.split()), validate=True))
        except ValueError:
            continue
    return found


def _der_header(der: bytes, at: int) -> tuple[int, int]:
    """The tag of the DER element at `at`, and where its contents start."""
    tag, length = der[at], der[at + 1]
    start = at + 2
    if length & 0x80:
        start += length & 0x7F
    return tag, start


def _x509_version(der: bytes) -> int:
    """The X.509 version of a DER certificate: 1 when TBSCertificate has no [0] version."""
    try:
        _, tbs = _der_header(der, 0)  # Certificate SEQUENCE
        _, first = _der_header(der, tbs)  # TBSCertificate SEQUENCE
        if der[first] != 0xA0:
            return 1
        _, version = _der_header(der, first)
        _, value = _der_header(der, version)  # INTEGER
        return der[value] + 1
    except IndexError:
        return 0


def _check_ca(path: PathLike, pem: bytes) -> None:
    """Refuse a tls_ca file that holds no certificate (a key, an empty file): grpc would
    take it and fail every handshake with an untrusted certificate."""
    usable = bool(_certificates(pem))
    if usable:
        try:
            ssl.create_default_context(cadata=pem.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError):
            usable = False
    if not usable:
        raise ValueError(
            f'TLS: tls_ca {os.fspath(path)} holds no certificate (no PEM "BEGIN CERTIFICATE" '
            "block; a private key or an empty file is not a CA): give the certificate of the CA "
            "that signed the server's"
        )


def _check_identity(cert_path: PathLike, key_path: PathLike, cert: bytes) -> None:
    """Refuse a client certificate that cannot be used: none in the file, an X.509 v1 one
    (errand serve refuses those), or a key that is not its own."""
    cert_name, key_name = os.fspath(cert_path), os.fspath(key_path)
    chain = _certificates(cert)
    if not chain:
        raise ValueError(
            f'TLS: tls_cert {cert_name} holds no certificate (no PEM "BEGIN CERTIFICATE" block)'
        )
    if _x509_version(chain[0]) == 1:
        raise ValueError(
            f"TLS: tls_cert {cert_name} cannot be used as a client certificate (X.509 version 1; "
            "errand serve refuses it): it must be an X.509 v3 certificate; `openssl x509 -req` "
            "makes a v1 one unless given extensions, for example "
            '-extfile <(printf "extendedKeyUsage=clientAuth")'
        )
    key = Path(key_name).read_bytes()
    if b"BEGIN ENCRYPTED PRIVATE KEY" in key or b"Proc-Type: 4,ENCRYPTED" in key:
        raise ValueError(
            f"TLS: tls_key {key_name} is encrypted (a passphrase protects it), which errand does "
            "not read: write a decrypted copy with `openssl pkey -in KEY -out KEY.plain`, "
            "readable by its owner only, and give that"
        )
    try:
        # No passphrase, ever: without one OpenSSL would prompt on the terminal.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            cert_name, key_name, password=lambda: b""
        )
    except (ssl.SSLError, OSError) as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            why = "the private key is not the certificate's"
        elif "PEM" in str(exc) or "NO_START_LINE" in str(exc):
            raise ValueError(
                f'TLS: tls_key {key_name} holds no private key (no PEM "BEGIN ... PRIVATE KEY" '
                f"block): {exc}"
            ) from exc
        else:
            why = str(exc)
        raise ValueError(
            f"TLS: tls_key {key_name} and tls_cert {cert_name} do not go together: {why}"
        ) from exc


def connection(
    target: Optional[str],
    *,
    token: Optional[str] = None,
    tls_ca: Optional[PathLike] = None,
    tls_cert: Optional[PathLike] = None,
    tls_key: Optional[PathLike] = None,
    tls_domain: Optional[str] = None,
    metadata: Optional[Metadata] = None,
) -> Connection:
    """Resolve the connection settings of a client or worker, as the CLI does.

    Each argument left as None falls back to its environment variable
    (ERRAND_SERVER, ERRAND_TOKEN, ERRAND_TLS_CA, ERRAND_TLS_CERT, ERRAND_TLS_KEY,
    ERRAND_TLS_DOMAIN); an empty string switches it off. TLS is used when a CA
    or a client certificate is given, or the target starts with https://
    (then with the system's roots unless a CA is given).
    """
    raw_target = target or os.environ.get("ERRAND_SERVER") or DEFAULT_TARGET
    resolved = resolve_target(raw_target)
    ca = _setting(tls_ca, "ERRAND_TLS_CA")
    cert = _setting(tls_cert, "ERRAND_TLS_CERT")
    key = _setting(tls_key, "ERRAND_TLS_KEY")
    domain = _setting(tls_domain, "ERRAND_TLS_DOMAIN")
    if (cert is None) != (key is None):
        raise ValueError("tls_cert and tls_key go together (a client certificate and its key)")
    credentials: Optional[grpc.ChannelCredentials] = None
    if ca is not None or cert is not None or raw_target.lower().startswith("https://"):
        ca_pem = _read(ca, "CA certificate (tls_ca)") if ca is not None else None
        if ca is not None and ca_pem is not None:
            _check_ca(ca, ca_pem)
        cert_pem = _read(cert, "client certificate (tls_cert)") if cert is not None else None
        key_pem = _read(key, "client key (tls_key)") if key is not None else None
        if cert is not None and key is not None and cert_pem is not None:
            _check_identity(cert, key, cert_pem)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )
    options = list(CHANNEL_OPTIONS)
    if credentials is not None and domain is not None:
        options.append(("grpc.ssl_target_name_override", domain))
    md = [(k, v) for k, v in (metadata or ())]
    bearer = _setting(token, "ERRAND_TOKEN")
    if bearer is not None:
        if any(k.lower() == "authorization" for k, _ in md):
            if token:
                raise ValueError("give the token either as token= or in metadata, not both")
        else:
            if not bearer.isascii() or not bearer.isprintable() or " " in bearer.strip():
                raise ValueError("the token must be printable ASCII without spaces")
            md.append(("authorization", f"Bearer {bearer.strip()}"))
    return Connection(
        resolved,
        credentials,
        tuple(options),
        tuple(md),
        tls_ca=os.fspath(ca) if ca is not None else None,
        tls_cert=os.fspath(cert) if cert is not None else None,
    )


def new_session_id() -> str:
    return uuid.uuid4().hex


class Backoff:
    """Exponential backoff with full jitter: delays grow from `initial` to `maximum`."""

    def __init__(self, initial: float = 0.05, maximum: float = 2.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self._next = self.initial


def encode_arguments(
    arguments: Optional[Mapping[str, Any]], extra: Mapping[str, Any], method: str
) -> str:
    if arguments is not None and not isinstance(arguments, Mapping):
        raise NotAMapping(
            grpc.StatusCode.INVALID_ARGUMENT,
            "arguments must be a mapping (a JSON object: {name: value}) or keywords, "
            f"not {type(arguments).__name__}",
            method,
        )
    merged: dict[str, Any] = dict(arguments or {})
    overlap = set(merged) & set(extra)
    if overlap:
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"argument(s) {sorted(overlap)} given both in the mapping and as keywords",
            method,
        )
    merged.update(extra)
    try:
        return encode(merged, "argument", compact=True)  # Enum keys and values as values
    except (TypeError, ValueError) as exc:
        raise NotJSON(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"arguments are not JSON serialisable: {exc}",
            method,
        ) from exc


class NotAMapping(InvalidArgument, TypeError):
    """Arguments given as something other than a mapping, refused before any
    call: an InvalidArgument, as the server's refusal would be, and a
    TypeError."""


class NotJSON(InvalidArgument, ValueError, TypeError):
    """Arguments that cannot be sent as JSON (an object or a key json cannot
    encode, a NaN or an infinity), refused before any call: an
    InvalidArgument, as the server's refusal would be, and a ValueError and
    a TypeError, as json's refusals are."""


def submit_request(
    session_id: str,
    tool: str,
    arguments: Optional[Mapping[str, Any]],
    extra: Mapping[str, Any],
    timeout_ms: int,
    idempotency_key: str,
    options: Optional[SubmitOptions] = None,
    queue_timeout_ms: int = 0,
) -> pb.SubmitToolRequest:
    for name, value in (("timeout_ms", timeout_ms), ("queue_timeout_ms", queue_timeout_ms)):
        if value < 0:
            raise InvalidArgument(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{name} must be >= 0 (milliseconds; 0: the tool's default)",
                "SubmitTool",
            )
    request = pb.SubmitToolRequest(
        session_id=session_id,
        tool=tool,
        arguments_json=encode_arguments(arguments, extra, "SubmitTool"),
        timeout_ms=timeout_ms,
        queue_timeout_ms=queue_timeout_ms,
        idempotency_key=idempotency_key or uuid.uuid4().hex,
    )
    if options is not None:
        options.apply(request)
    return request


@dataclasses.dataclass(frozen=True)
class SubmitOptions:
    """A submit's issue-17 options; unset values leave the tool's (see `Client.submit`)."""

    delivery: Any = None
    dedup: Any = None
    result_budget_bytes: int = 0
    fallback_tool: str = ""
    fallback_last_good_max_age_ms: int = 0

    def apply(self, request: pb.SubmitToolRequest) -> None:
        """Fill `request`; raises InvalidArgument (before any call) for a bad value."""
        try:
            request.delivery = int(to_enum(DeliveryPolicy, self.delivery, "delivery"))  # type: ignore[assignment]
            request.dedup = int(to_enum(DedupPolicy, self.dedup, "dedup"))  # type: ignore[assignment]
            if self.result_budget_bytes < 0:
                raise ValueError("result_budget_bytes must be >= 0 (0: the tool's budget)")
            request.result_budget_bytes = self.result_budget_bytes
            if self.fallback_tool or self.fallback_last_good_max_age_ms:
                fallback = Fallback(self.fallback_tool, self.fallback_last_good_max_age_ms)
                request.fallback.CopyFrom(fallback.to_pb())
        except ValueError as exc:
            raise InvalidArgument(
                grpc.StatusCode.INVALID_ARGUMENT, str(exc), "SubmitTool"
            ) from None
