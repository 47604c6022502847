"""An Endpoint's router: production variants, blue/green fleets, shadow, data capture.

The router is the data plane of an Endpoint with more than one model server behind it
(SageMaker's production variants): it reads the routing table the operator writes
(:mod:`kubemaker_runtime.routing`), draws a variant and a fleet per request, holds
requests while a variant scales up from zero, mirrors to a shadow variant and captures
requests and responses. ``python -m kubemaker_runtime.router --routes FILE`` runs it.
Importing this package starts nothing and loads neither granian nor aiohttp.
"""
