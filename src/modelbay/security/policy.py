"""The one table of who may call what: every REST route and gRPC method has a rule.

The app refuses to start when a route has no rule here, and the authorization-matrix test
drives every entry with every role, so a new route cannot slip in unguarded.
"""

from __future__ import annotations

from modelbay.security.access import AUTHENTICATED, PUBLIC, Rule
from modelbay.security.principals import Principal, Scope

_READ_MODEL = Rule(Scope.READ, resource="model")
_INFER_MODEL = Rule(Scope.INFER, resource="model")
_WRITE_MODEL = Rule(Scope.WRITE, resource="model")
_READ_DEPLOYMENT = Rule(Scope.READ, resource="deployment")
_WRITE_DEPLOYMENT = Rule(Scope.WRITE, resource="deployment")
_ADMIN = Rule(Scope.ADMIN)
_MANAGE = Rule(Scope.MANAGE)

_M = "/api/v1/models/{name}"
_F = "/api/v1/jobs/{job}/federated"
_TAKE_PART = Rule(Scope.WRITE, resource="job", param="job")

REST_RULES: dict[tuple[str, str], Rule] = {
    # V2: health and server metadata are public (load balancers and probes call them)
    ("GET", "/v2"): PUBLIC,
    ("GET", "/v2/health/live"): PUBLIC,
    ("GET", "/v2/health/ready"): PUBLIC,
    ("GET", "/v2/models/{name}"): _READ_MODEL,
    ("GET", "/v2/models/{name}/versions/{version}"): _READ_MODEL,
    ("GET", "/v2/models/{name}/ready"): _READ_MODEL,
    ("GET", "/v2/models/{name}/versions/{version}/ready"): _READ_MODEL,
    ("POST", "/v2/models/{name}/infer"): _INFER_MODEL,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): _INFER_MODEL,
    # the OpenAI API: the model is named in the body (``name``, ``name:version``,
    # ``name@alias``), so the route itself checks the model's rule (read, or infer), as
    # V2 does: another tenant's private model is unknown before a scope is missing
    ("GET", "/v1/models"): Rule(Scope.READ),
    ("GET", "/v1/models/{model}"): AUTHENTICATED,
    ("POST", "/v1/chat/completions"): AUTHENTICATED,
    ("POST", "/v1/completions"): AUTHENTICATED,
    ("POST", "/v1/embeddings"): AUTHENTICATED,
    # models (the list shows only what the caller may see)
    ("GET", "/api/v1/models"): Rule(Scope.READ),
    ("POST", "/api/v1/models"): Rule(Scope.WRITE, resource="model", from_body=True, creates=True),
    ("GET", _M): _READ_MODEL,
    ("PATCH", _M): _WRITE_MODEL,
    ("DELETE", _M): _WRITE_MODEL,
    ("PUT", _M + "/access"): Rule(Scope.MANAGE, resource="model", owner_only=True),
    ("GET", _M + "/versions"): _READ_MODEL,
    ("POST", _M + "/versions"): Rule(Scope.WRITE, resource="model", creates=True),
    ("GET", _M + "/versions/{version}"): _READ_MODEL,
    ("DELETE", _M + "/versions/{version}"): _WRITE_MODEL,
    ("GET", _M + "/versions/{version}/files/{path:path}"): Rule(
        Scope.READ, resource="model", owner_only=True
    ),
    ("GET", _M + "/aliases"): _READ_MODEL,
    ("PUT", _M + "/aliases/{alias}"): _WRITE_MODEL,
    ("DELETE", _M + "/aliases/{alias}"): _WRITE_MODEL,
    # deployments (never visible to other tenants, even of a shared model)
    ("POST", "/api/v1/deployments"): Rule(
        Scope.WRITE, resource="model", param="model", from_body=True
    ),
    ("GET", "/api/v1/deployments"): Rule(Scope.READ),
    ("GET", "/api/v1/deployments/{name}"): _READ_DEPLOYMENT,
    ("GET", "/api/v1/deployments/{name}/stats"): _READ_DEPLOYMENT,
    ("PATCH", "/api/v1/deployments/{name}"): _WRITE_DEPLOYMENT,
    ("DELETE", "/api/v1/deployments/{name}"): _WRITE_DEPLOYMENT,
    # datasets and training jobs (never visible to other tenants); training needs write
    ("GET", "/api/v1/datasets"): Rule(Scope.READ),
    ("GET", "/api/v1/datasets/{name}"): Rule(Scope.READ, resource="dataset"),
    ("DELETE", "/api/v1/datasets/{name}"): Rule(Scope.WRITE, resource="dataset"),
    ("GET", "/api/v1/datasets/{name}/versions"): Rule(Scope.READ, resource="dataset"),
    ("POST", "/api/v1/datasets/{name}/versions"): Rule(
        Scope.WRITE, resource="dataset", creates=True
    ),
    ("POST", "/api/v1/jobs"): Rule(
        Scope.WRITE, resource="dataset", param="dataset", from_body=True
    ),
    ("GET", "/api/v1/jobs"): Rule(Scope.READ),
    ("GET", "/api/v1/jobs/{job}"): Rule(Scope.READ, resource="job", param="job"),
    ("GET", "/api/v1/jobs/{job}/events"): Rule(Scope.READ, resource="job", param="job"),
    ("POST", "/api/v1/jobs/{job}/cancel"): Rule(Scope.WRITE, resource="job", param="job"),
    # a federated job's clients: keys of its tenant that may train (or admins) take part
    ("GET", _F): Rule(Scope.READ, resource="job", param="job"),
    ("POST", _F + "/clients"): _TAKE_PART,
    ("GET", _F + "/clients/{client}"): _TAKE_PART,
    ("GET", _F + "/rounds/{round}/model"): _TAKE_PART,
    ("PUT", _F + "/rounds/{round}/updates/{client}"): _TAKE_PART,
    # tenants, keys, usage
    ("GET", "/api/v1/whoami"): AUTHENTICATED,
    ("POST", "/api/v1/tenants"): _ADMIN,
    ("GET", "/api/v1/tenants"): _ADMIN,
    ("GET", "/api/v1/tenants/{name}"): Rule(Scope.MANAGE, resource="tenant"),
    ("PATCH", "/api/v1/tenants/{name}"): _ADMIN,
    ("POST", "/api/v1/tenants/{name}/accounts"): Rule(Scope.MANAGE, resource="tenant"),
    ("GET", "/api/v1/tenants/{name}/accounts"): Rule(Scope.MANAGE, resource="tenant"),
    ("DELETE", "/api/v1/tenants/{name}/accounts/{account}"): Rule(Scope.MANAGE, resource="tenant"),
    ("POST", "/api/v1/keys"): Rule(Scope.MANAGE, resource="tenant", param="tenant", from_body=True),
    ("GET", "/api/v1/keys"): _MANAGE,
    ("GET", "/api/v1/keys/{key_id}"): Rule(Scope.MANAGE, resource="key", param="key_id"),
    ("DELETE", "/api/v1/keys/{key_id}"): Rule(Scope.MANAGE, resource="key", param="key_id"),
    ("GET", "/api/v1/usage"): _MANAGE,
    # audit and metrics span every tenant
    ("GET", "/api/v1/audit"): _ADMIN,
    ("GET", "/api/v1/audit/verify"): _ADMIN,
    ("GET", "/metrics"): _ADMIN,
    # the API's own description
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    # the web console: its page and sign-in are public; the session is the key's
    ("GET", "/ui"): PUBLIC,
    ("GET", "/ui/"): PUBLIC,
    ("POST", "/ui/sign-in"): PUBLIC,
    ("GET", "/ui/session"): AUTHENTICATED,
    ("DELETE", "/ui/session"): AUTHENTICATED,
}
PUBLIC_PREFIXES = ("/docs/assets/", "/ui/static/")
"""Static files answered without a key: the API docs' and the console's scripts and styles."""

GRPC_RULES: dict[str, Rule] = {
    "ServerLive": PUBLIC,
    "ServerReady": PUBLIC,
    "ServerMetadata": PUBLIC,
    "ModelMetadata": _READ_MODEL,
    "ModelReady": _READ_MODEL,
    "ModelInfer": Rule(Scope.INFER, resource="model", param="model_name"),
}
"""Keyed by RPC name; ``param`` names the request message's field holding the model."""


ADMIN_UNLIMITED_PATHS = ("/api/v1/tenants", "/api/v1/keys")
"""Routes where an admin is never refused by a rate limit or quota, so a bad limit can
always be undone (``PATCH /api/v1/tenants/{name}``) or a new key made."""


def exempt_from_limits(principal: Principal, path: str) -> bool:
    """Whether ``principal``'s request to ``path`` passes even when over its limits."""
    return principal.is_admin and path.startswith(ADMIN_UNLIMITED_PATHS)


def rest_rules(*, public_metrics: bool = False) -> dict[tuple[str, str], Rule]:
    """The REST table, with ``/metrics`` public when the operator asks for it."""
    rules = dict(REST_RULES)
    if public_metrics:
        rules[("GET", "/metrics")] = PUBLIC
    return rules


def public_paths(rules: dict[tuple[str, str], Rule]) -> frozenset[str]:
    """Paths answered without a key (templates without parameters only)."""
    return frozenset(path for (_, path), rule in rules.items() if rule.public and "{" not in path)
