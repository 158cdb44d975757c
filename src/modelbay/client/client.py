"""``Client``: the Python SDK of a modelbay server (management API and V2 inference)."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import httpx
import numpy as np

from modelbay import __version__
from modelbay.client.access import AccessCalls
from modelbay.client.deployments import WAIT_TIMEOUT_S, DeploymentCalls, deployment_changes
from modelbay.client.errors import ApiError, raise_for_status
from modelbay.client.federated import FederatedCalls
from modelbay.client.llm import LLMCalls
from modelbay.client.training import TrainingCalls
from modelbay.client.uploads import ProgressCallback, ProgressReader, UploadProgress, collect_files
from modelbay.errors import ArtifactCorrupted, ModelbayError
from modelbay.protocols import v2
from modelbay.tensors import Signature

DEFAULT_URL = "http://127.0.0.1:8080"
_CHUNK = 1024 * 1024

SignatureSource = Mapping[str, Any] | Signature | str | os.PathLike[str]
"""A signature as a mapping, a ``Signature``, or the path of a JSON file holding one."""


class Client(AccessCalls, LLMCalls, TrainingCalls, FederatedCalls):
    """Talks to one modelbay server; returns the server's JSON as dicts, tensors as arrays.

    ``url`` defaults to ``$MODELBAY_URL`` (else http://127.0.0.1:8080) and ``api_key`` to
    ``$MODELBAY_API_KEY``; errors are ``ApiError`` (status 0 when the server is unreachable).
    ``verify`` is the CA bundle (path) that signs the server's TLS certificate, or a bool as in
    httpx; ``transport`` replaces the network, e.g. by ``httpx.MockTransport`` in tests.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("MODELBAY_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("MODELBAY_API_KEY")
        headers = {"User-Agent": f"modelbay-python/{__version__}"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        tls = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, verify=tls, transport=transport
        )
        self._deployments = DeploymentCalls(self._json, self._request)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections to the server."""
        self._http.close()

    # -- models ---------------------------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        """Every model with its latest version and aliases."""
        return _items(self._json("GET", "/api/v1/models"), "models")

    def get_model(self, name: str) -> dict[str, Any]:
        """One model's record."""
        return self._json("GET", _model(name))

    def create_model(
        self,
        name: str,
        description: str = "",
        task: str | None = None,
        labels: list[str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register a model without versions (a push also creates its model)."""
        body = {
            "name": name,
            "description": description,
            "task": task,
            "labels": labels,
            "tags": dict(tags or {}),
        }
        return self._json("POST", "/api/v1/models", json=body)

    def update_model(self, name: str, **fields: Any) -> dict[str, Any]:
        """Change a model's description, task, labels or tags; other fields stay."""
        return self._json("PATCH", _model(name), json=fields)

    def delete_model(self, name: str) -> None:
        """Delete a model, all its versions and their files."""
        self._request("DELETE", _model(name))

    # -- versions -------------------------------------------------------------------------

    def push(
        self,
        name: str,
        path: str | os.PathLike[str],
        format: str | None = None,
        signature: SignatureSource | None = None,
        entrypoint: str | None = None,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
        archive: bool = False,
    ) -> dict[str, Any]:
        """Upload a file, or every file under a directory, as a new version of ``name``.

        With ``archive`` the file is a .zip, .tar or .tar.gz of the version's files that the
        server unpacks. Files are streamed from disk; ``progress(bytes_sent, total)`` follows.
        """
        files = collect_files(path, archive=archive)
        tracker = UploadProgress(sum(p.stat().st_size for _, p in files), progress)
        fields = {
            "format": format,
            "signature": _signature_json(signature),
            "entrypoint": entrypoint,
            "description": description or None,
            "metadata": _json_field(metadata),
            "metrics": _json_field(metrics),
            "source": _json_field(source),
            "tags": _json_field(tags),
            "archive": "true" if archive else None,
        }
        data = {key: value for key, value in fields.items() if value is not None}
        with ExitStack() as stack:
            parts = []
            for rel, file in files:
                reader = ProgressReader(stack.enter_context(file.open("rb")), tracker)
                parts.append(("files", (rel, cast(BinaryIO, reader), "application/octet-stream")))
            return self._json("POST", _model(name, "versions"), data=data, files=parts)

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a model, oldest first."""
        return _items(self._json("GET", _model(name, "versions")), "versions")

    def get_version(self, name: str, version: int | str = "latest") -> dict[str, Any]:
        """One version by number, alias or "latest": format, files, signature, metadata."""
        return self._json("GET", _model(name, "versions", version))

    def delete_version(self, name: str, version: int | str) -> None:
        """Delete one version (a number, or an alias naming it) and its unshared files."""
        number = version if isinstance(version, int) else self.get_version(name, version)["version"]
        self._request("DELETE", _model(name, "versions", number))

    def download(
        self, name: str, version: int | str, dest_dir: str | os.PathLike[str]
    ) -> list[Path]:
        """Stream every file of a version into ``dest_dir``, checking each sha256."""
        record = self.get_version(name, version)
        dest = Path(dest_dir)
        written = []
        for entry in record["files"]:
            target = _inside(dest, str(entry["path"]))
            self._download_file(name, int(record["version"]), entry, target)
            written.append(target)
        return written

    # -- aliases --------------------------------------------------------------------------

    def list_aliases(self, name: str) -> dict[str, int]:
        """A model's aliases and the version each points to."""
        aliases = self._json("GET", _model(name, "aliases")).get("aliases", {})
        return {str(alias): int(number) for alias, number in aliases.items()}

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        """Point ``alias`` at ``version`` (creating or moving it); returns that version."""
        return self._json("PUT", _model(name, "aliases", alias), json={"version": version})

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias; the version stays."""
        self._request("DELETE", _model(name, "aliases", alias))

    # -- deployments ----------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        version: int | str = "latest",
        *,
        canary_version: int | str | None = None,
        canary_weight: int = 0,
        wait: bool = True,
        timeout: float = WAIT_TIMEOUT_S,
        **config: Any,
    ) -> dict[str, Any]:
        """Serve ``version`` ("latest" follows pushes) with ``config``; ``wait`` for replicas."""
        body = {"model": name, "version": version, "canary_version": canary_version}
        body.update(canary_weight=canary_weight, **config)
        return self._deployments.create(body, wait=wait, timeout=timeout)

    def apply_deployment(
        self,
        name: str,
        version: int | str = "latest",
        *,
        canary_version: int | str | None = None,
        canary_weight: int | None = None,
        wait: bool = True,
        timeout: float = WAIT_TIMEOUT_S,
        **config: Any,
    ) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]] | None]:
        """Deploy ``name`` as asked: create the deployment, or change the existing one in
        place (a rolling update) where it differs. Settings left ``None`` stay as they are.

        Returns the record and the changes as ``{field: (before, after)}``, None when the
        deployment was created.
        """
        try:
            current = self.get_deployment(name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {"version": version, "canary_version": canary_version, **config}
            return self.deploy(
                name, canary_weight=canary_weight or 0, wait=wait, timeout=timeout, **body
            ), None
        wanted = {"version": version, "canary_version": canary_version}
        wanted.update(canary_weight=canary_weight, **config)
        changes = deployment_changes(current, wanted)
        if not changes:
            return (self._deployments.wait_serving(current, timeout) if wait else current), {}
        fields = {key: after for key, (_, after) in changes.items()}
        record = self._deployments.update(name, fields, wait=wait, timeout=timeout)
        return record, changes

    def update_deployment(self, name: str, *, wait: bool = False, **fields: Any) -> dict[str, Any]:
        """Change ``version``, canary (``canary_version=""`` removes it) or serving settings."""
        return self._deployments.update(name, fields, wait=wait)

    def scale(
        self, name: str, min_replicas: int | None = None, max_replicas: int | None = None
    ) -> dict[str, Any]:
        """Change a deployment's replica range; a bound left ``None`` stays as it is."""
        return self.update_deployment(name, min_replicas=min_replicas, max_replicas=max_replicas)

    def undeploy(self, name: str) -> None:
        """Stop serving a model; requests already queued are answered first."""
        self._deployments.delete(name)

    def list_deployments(self) -> list[dict[str, Any]]:
        """Every deployment with its live status."""
        return self._deployments.list_all()

    def get_deployment(self, name: str) -> dict[str, Any]:
        """One deployment with its live status: state, versions, replicas, queue."""
        return self._deployments.get(name)

    # -- audit ----------------------------------------------------------------------------

    def audit_events(self, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """Audit events, newest first; ``before`` pages back from a sequence number."""
        params: dict[str, int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return _items(self._json("GET", "/api/v1/audit", params=params), "events")

    def verify_audit(self) -> dict[str, Any]:
        """Recompute the audit chain: ``{ok, checked, first_bad_seq, reason}``."""
        return self._json("GET", "/api/v1/audit/verify")

    # -- inference (Open Inference Protocol v2) -------------------------------------------

    def predict(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray],
        version: int | str | None = None,
        outputs: list[str] | None = None,
        binary: bool = True,
    ) -> dict[str, np.ndarray]:
        """Run the model on named arrays; returns its outputs (or those in ``outputs``)."""
        body, header_length = v2.encode_request(dict(inputs), outputs, binary=binary)
        content_type = v2.BINARY_CONTENT_TYPE if binary else v2.JSON_CONTENT_TYPE
        headers = {"Content-Type": content_type}
        if header_length is not None:
            headers[v2.HEADER_LENGTH] = str(header_length)
        response = self._request(
            "POST", _v2_model(name, version, "infer"), content=body, headers=headers
        )
        raw_length = response.headers.get(v2.HEADER_LENGTH)
        length = int(raw_length) if raw_length is not None else None
        return v2.decode_response(response.content, length)

    def server_metadata(self) -> dict[str, Any]:
        """Server name, version and protocol extensions."""
        return self._json("GET", "/v2")

    def model_metadata(self, name: str, version: int | str | None = None) -> dict[str, Any]:
        """V2 metadata of a model version: versions, platform, inputs and outputs."""
        return self._json("GET", _v2_model(name, version))

    def is_live(self) -> bool:
        """Whether the server answers; ``False`` when it cannot be reached."""
        return self._healthy("/v2/health/live")

    def is_ready(self) -> bool:
        """Whether the server can serve; ``False`` when it cannot be reached."""
        return self._healthy("/v2/health/ready")

    def model_ready(self, name: str, version: int | str | None = None) -> bool:
        """Whether a model version is loaded and can answer; unknown models raise ``ApiError``."""
        response = self._send("GET", _v2_model(name, version, "ready"))
        if response.status_code == httpx.codes.SERVICE_UNAVAILABLE:
            return False
        raise_for_status(response)
        return True

    # -- transport ------------------------------------------------------------------------

    def _healthy(self, path: str) -> bool:
        try:
            return self._send("GET", path).status_code == httpx.codes.OK
        except ApiError:
            return False

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, **kwargs)
        raise_for_status(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ApiError(response.status_code, f"{method} {path} did not answer a JSON object")
        return doc

    @contextmanager
    def _stream(self, path: str) -> Iterator[httpx.Response]:
        try:
            with self._http.stream("GET", path) as response:
                if response.is_error:
                    response.read()
                    raise_for_status(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    @contextmanager
    def _stream_post(self, path: str, body: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream("POST", path, json=body) as response:
                if response.is_error:
                    response.read()
                    raise_for_status(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.TransportError) -> ApiError:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = "pass the CA that signed its certificate (SDK verify=, CLI --ca-cert)"
            return ApiError(0, f"TLS with modelbay at {self.url} failed: {exc}; {hint}")
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ApiError(0, f"cannot reach modelbay at {self.url}: is `modelbay serve` running?")
        return ApiError(0, f"request to modelbay at {self.url} failed: {exc or type(exc).__name__}")

    def _download_file(
        self, name: str, version: int, entry: Mapping[str, Any], target: Path
    ) -> None:
        rel, expected = str(entry["path"]), str(entry["digest"])
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        hasher = hashlib.sha256()
        try:
            url = _model(name, "versions", version, "files", rel)
            with self._stream(url) as response, partial.open("wb") as out:
                for chunk in response.iter_bytes(_CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != expected:
                raise ArtifactCorrupted(
                    f"'{rel}' of '{name}' version {version} has sha256 {hasher.hexdigest()}; "
                    f"the version's manifest says {expected}"
                )
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)


def _model(name: str, *parts: str | int) -> str:
    return "/".join(["/api/v1/models", *(quote(str(p), safe="/") for p in (name, *parts))])


def _v2_model(name: str, version: int | str | None, *parts: str) -> str:
    path = f"/v2/models/{quote(name, safe='')}"
    if version is not None:
        path += f"/versions/{quote(str(version), safe='')}"
    return "/".join([path, *parts])


def _items(doc: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    return [dict(item) for item in doc.get(key, [])]


def _json_field(value: Mapping[str, Any] | None) -> str | None:
    return json.dumps(dict(value)) if value else None


def _signature_json(signature: SignatureSource | None) -> str | None:
    if signature is None:
        return None
    if isinstance(signature, Signature):
        return signature.model_dump_json()
    if isinstance(signature, Mapping):
        return json.dumps(dict(signature))
    return Path(signature).read_text(encoding="utf-8")


def _inside(dest: Path, rel: str) -> Path:
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise ModelbayError(f"refusing to write '{rel}' outside '{dest}'")
    return dest.joinpath(*parts)
