"""Typed errors of modelbay, independent of any web framework.

Every error a client can cause or see is a ``ModelbayError`` carrying an HTTP-like
``status`` and a message that names the offending field and, where it helps, what would
have been valid. Transports (REST, gRPC, CLI) map these in one function each; anything
that is not a ``ModelbayError`` is a bug and is answered with an opaque 500.

    ModelbayError
    ├── InvalidRequest (400)   malformed request, wrong tensor name/shape/dtype
    ├── Unauthenticated (401)  no API key, or an unknown, expired or revoked one
    ├── Forbidden (403)        the key's role does not allow this
    ├── NotFound (404)         unknown model, version, alias or file
    ├── Conflict (409)         already exists, still referenced
    ├── PayloadTooLarge (413)  body or upload over the configured limit
    ├── InvalidArtifact (422)  unsupported or unsafe format, invalid signature
    ├── UnknownReference (422) a body field names a version or alias that does not exist
    ├── Overloaded (429)       queue full or rate limited; carries ``retry_after``
    ├── ModelNotReady (503)    the model cannot serve right now; may carry ``retry_after``
    ├── DeadlineExceeded (504) the request's time ran out before it could run
    └── ArtifactCorrupted (500) a stored blob no longer matches its digest
"""

from __future__ import annotations


class ModelbayError(Exception):
    """Base of every error modelbay reports to a client."""

    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.param = param
        self.retry_after = retry_after
        """Seconds after which a retry may succeed (sent as ``Retry-After``)."""
        self.code = code
        """A machine-readable reason where one helps (``context_length_exceeded``)."""

    def __str__(self) -> str:
        return self.message


class InvalidRequest(ModelbayError):
    status = 400


class Unauthenticated(ModelbayError):
    """No API key, or one that is unknown, expired or revoked."""

    status = 401


class Forbidden(ModelbayError):
    """The key is valid but its role does not allow this on a resource it may see."""

    status = 403


class NotFound(ModelbayError):
    status = 404


class Conflict(ModelbayError):
    status = 409


class PayloadTooLarge(ModelbayError):
    status = 413


class InvalidArtifact(ModelbayError):
    status = 422


class UnknownReference(ModelbayError):
    """A well-formed request whose body names something that does not exist: the URL's
    resource is there (so not 404), but the request cannot be carried out."""

    status = 422


class Overloaded(ModelbayError):
    status = 429


class ModelNotReady(ModelbayError):
    status = 503


class DeadlineExceeded(ModelbayError):
    status = 504


class ClientDisconnected(ModelbayError):
    """The client went away; nobody reads the answer (nginx's 499)."""

    status = 499


class ArtifactCorrupted(ModelbayError):
    status = 500


__all__ = [
    "ArtifactCorrupted",
    "ClientDisconnected",
    "Conflict",
    "DeadlineExceeded",
    "Forbidden",
    "InvalidArtifact",
    "InvalidRequest",
    "ModelNotReady",
    "ModelbayError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Unauthenticated",
]
