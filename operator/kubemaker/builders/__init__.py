"""Pure functions from a spec (and the operator's configuration) to Kubernetes manifests.

Nothing here talks to the API or reads the clock: each ``build_*`` takes everything it
needs as arguments and returns dicts, so every manifest is unit-tested exactly.
"""
