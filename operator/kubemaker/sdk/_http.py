"""Requests to a model server or an Endpoint's router: SageMaker's InvokeEndpoint headers."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import IO

from kubemaker.sdk.exceptions import ModelError

TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"


def headers(
    content_type: str | None, accept: str | None, target_variant: str | None
) -> dict[str, str]:
    sent = {"Content-Type": content_type or "application/octet-stream"}
    if accept:
        sent["Accept"] = accept
    if target_variant:
        sent[TARGET_VARIANT_HEADER] = target_variant
    return sent


def post(
    url: str,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    target_variant: str | None,
    timeout: float = 60.0,
) -> tuple[bytes, str]:
    """POST a request to a model server or router; ModelError for an error answer."""
    request = urllib.request.Request(
        url, data=body, headers=headers(content_type, accept, target_variant), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read(), answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        text = _read(exc)
        raise ModelError(f"{url} answered {exc.code}: {text}", exc.code) from None
    except OSError as exc:
        raise ModelError(f"{url} did not answer: {exc}", 503) from None


def _read(stream: IO[bytes]) -> str:
    try:
        return stream.read().decode(errors="replace").strip()
    except OSError:
        return ""
