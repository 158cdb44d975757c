"""Security: the audit trail now; principals, keys, roles and quotas build on it."""
