"""The API fuzzed from its own OpenAPI schema: the suite's seeded run and ``make fuzz``."""
