"""Security: principals, keys, roles, access rules, rate limits, usage and the audit trail."""
