"""An Endpoint's routing table from its spec and the fleets that serve each variant.

Pure. The rules, SageMaker's: production variants split the requests that name no
variant by ``initialVariantWeight``; the shadow variant gets a copy of
``100 * shadow weight / production weight`` percent of the production requests (at most
100; a shadow needs exactly one production variant); ``dataCaptureConfig`` becomes the
router's capture settings. Local mode (:mod:`kubemaker.local.endpoint`) builds its table
here; the Endpoint planner builds the same one from its fleets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kubemaker.api.endpoint import DataCaptureConfig, EndpointSpec, ProductionVariant
from kubemaker_runtime.routing import Capture, Fleet, RoutingTable, Shadow, Variant

# A production weight of 0 would divide by zero: any shadow weight then mirrors 100 %.
_MIN_WEIGHT = 1e-9


def routing_table_for(
    spec: EndpointSpec, name: str, fleets: Mapping[str, Sequence[Fleet]]
) -> RoutingTable:
    """The table for Endpoint ``name``; ``fleets`` maps each variant name (production and
    shadow) to the fleets serving it. Versioned (:meth:`RoutingTable.with_version`)."""

    def variant_of(variant: ProductionVariant) -> Variant:
        return Variant(
            name=variant.variant_name,
            weight=variant.initial_variant_weight,
            fleets=list(fleets[variant.variant_name]),
        )

    shadow = None
    if spec.shadow_production_variants:
        copied = spec.shadow_production_variants[0]
        weight = max(spec.production_variants[0].initial_variant_weight, _MIN_WEIGHT)
        shadow = Shadow(
            variant=variant_of(copied),
            mirror_percentage=min(100.0, 100.0 * copied.initial_variant_weight / weight),
        )
    return RoutingTable(
        endpoint=name,
        variants=[variant_of(v) for v in spec.production_variants],
        shadow=shadow,
        capture=capture_for(spec.data_capture_config),
    ).with_version()


def capture_for(config: DataCaptureConfig | None) -> Capture | None:
    """The router's capture settings; None when capture is off."""
    if config is None or not config.enable_capture:
        return None
    modes = {o.capture_mode for o in config.capture_options}
    headers = config.capture_content_type_header
    content_types: dict[str, list[str]] = {}
    if headers is not None and headers.csv_content_types:
        content_types["csv_content_types"] = headers.csv_content_types
    if headers is not None and headers.json_content_types:
        content_types["json_content_types"] = headers.json_content_types
    return Capture(
        destination=config.destination_s3_uri,
        sampling_percentage=config.initial_sampling_percentage,
        capture_input="Input" in modes,
        capture_output="Output" in modes,
        **content_types,
    )
