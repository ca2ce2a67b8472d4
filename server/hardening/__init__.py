"""Measurements of the service's hardening: masking recall, fuzzing of the websockets, durability under kill -9,
a soak of simultaneous calls. Each is a `hotline bench ...` command printing its figures (docs/security.md)."""
