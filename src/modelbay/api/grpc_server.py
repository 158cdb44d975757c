"""Open Inference Protocol v2 gRPC edge (``inference.GRPCInferenceService``).

Runs as a ``grpc.aio`` server on the event loop of the HTTP app, started and stopped by its
lifespan. Like the REST routes in ``api/v2.py`` it only converts wire <-> types and calls
``InferenceService`` and the registry; errors are mapped to gRPC status in ``grpc_status``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import grpc

from modelbay import __version__
from modelbay.api.auth import bearer_token
from modelbay.api.context import AppContext
from modelbay.errors import ModelbayError, Unauthenticated
from modelbay.protocols.grpc import codec
from modelbay.protocols.grpc import grpc_predict_v2_pb2 as pb
from modelbay.protocols.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from modelbay.security.guard import Caller
from modelbay.security.policy import GRPC_RULES
from modelbay.security.principals import Principal
from modelbay.tensors import TensorSpec

log = logging.getLogger("modelbay.api.grpc")

EXTENSIONS = ["classification"]
STOP_GRACE_S = 5.0
"""Seconds in-flight calls get to finish when the server stops."""

# Messages over this size are decoded and encoded in a worker thread, off the event loop.
_IN_THREAD_BYTES = 64 * 1024

_STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

P = ParamSpec("P")
T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Servicer = TypeVar("Servicer", bound="InferenceServicer")


def grpc_status(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status and message answering ``exc``; anything unexpected is logged and opaque."""
    if isinstance(exc, ModelbayError):
        if exc.status >= 500:
            log.error("%s in %s: %s", type(exc).__name__, method, exc.message)
        return _STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message
    incident = uuid.uuid4().hex[:12]
    log.error("unhandled error %s in %s", incident, method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal server error (incident {incident})"


def _guarded(
    rpc: Callable[[Servicer, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[Servicer, Req, grpc.aio.ServicerContext], Coroutine[Any, Any, Resp]]:
    """Check the RPC's rule in ``policy.GRPC_RULES`` (key from the ``authorization``,
    ``api-key`` or ``x-api-key`` metadata), then run it; any exception becomes the gRPC
    status ``grpc_status`` chooses."""
    rule = GRPC_RULES[rpc.__name__]

    @functools.wraps(rpc)
    async def answer(self: Servicer, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        principal: Principal | None = None
        started = time.perf_counter()
        try:
            caller = _caller(context, rpc.__name__)
            guard = self.ctx.guard
            metadata = context.invocation_metadata() or ()
            try:
                token = bearer_token(
                    [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in metadata]
                )
            except Unauthenticated as exc:
                await guard.record_refusal(None, exc, caller)
                raise
            if token is not None:
                principal = await guard.authenticate(token, caller)
                guard.admit(principal)
            name = getattr(request, rule.param, None) if rule.resource else None
            await guard.authorize(principal, rule, name, caller)
            return await rpc(self, request, context)
        except Exception as exc:
            code, message = grpc_status(exc, rpc.__name__)
            await context.abort(code, message)
            raise  # abort() raises; this only tells readers nothing falls through
        finally:
            if principal is not None:
                self.ctx.guard.add_seconds(principal, time.perf_counter() - started)

    return answer


def _caller(context: grpc.aio.ServicerContext, method: str) -> Caller:
    peer = context.peer() or ""  # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555"
    host = peer.split(":", 1)[1].rsplit(":", 1)[0].strip("[]") if ":" in peer else None
    return Caller(client=host, action=f"grpc {method}", target={"rpc": method})


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The V2 gRPC methods; names are the protocol's RPC names."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    @_guarded
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @_guarded
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=await asyncio.to_thread(self.ctx.registry.reachable))

    @_guarded
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="modelbay", version=__version__, extensions=EXTENSIONS
        )

    @_guarded
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        return await asyncio.to_thread(self._metadata, request.name, request.version or None)

    @_guarded
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            await self.ctx.inference.ready(request.name, request.version or None)
        except ModelbayError as exc:
            if exc.status == 404:
                raise
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_guarded
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        req = await _off_loop(request.ByteSize(), codec.decode_request, request)
        wanted = [o.name for o in req.outputs] if req.outputs else None
        ref = request.model_version or None
        result = await self.ctx.inference.infer(request.model_name, ref, req.inputs, wanted)
        return await _off_loop(
            sum(a.nbytes for a in result.outputs.values()),
            codec.encode_response,
            model_name=request.model_name,
            model_version=str(result.version),
            outputs=result.outputs,
            request=req,
            labels=result.labels,
        )

    def _metadata(self, name: str, ref: str | None) -> pb.ModelMetadataResponse:
        meta = self.ctx.inference.metadata(name, ref)
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=[_tensor_metadata(t) for t in meta.signature.inputs],
            outputs=[_tensor_metadata(t) for t in meta.signature.outputs],
        )


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=spec.shape
    )


async def _off_loop(size: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    # Small messages convert faster than a thread hop takes; large ones must not stall the loop.
    if size > _IN_THREAD_BYTES:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)


async def start_grpc_server(
    ctx: AppContext, host: str, port: int, tls: tuple[bytes, bytes] | None = None
) -> grpc.aio.Server:
    """Serve V2 gRPC on ``host:port`` (0: any free port), over TLS only when ``tls`` gives
    ``(certificate chain, private key)`` PEM; stop with ``await server.stop(grace)``."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", ctx.settings.max_request_bytes),
            ("grpc.max_send_message_length", -1),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(ctx), server)  # type: ignore[no-untyped-call]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tls is None:
        server.add_insecure_port(address)
    else:
        cert_chain, private_key = tls
        server.add_secure_port(address, grpc.ssl_server_credentials([(private_key, cert_chain)]))
    await server.start()
    log.info("V2 gRPC listening on %s%s", address, " (TLS)" if tls else "")
    return server
