"""Names the flows agree on: a central group per source group and account, a card per central version."""

from __future__ import annotations

import re

_MAX_NAME = 63  # SageMaker group and card names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}


def _sagemaker_name(raw: str) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9-]+", "-", raw).strip("-")
    return cleaned[:_MAX_NAME].rstrip("-")


def central_group_name(source_account: str, source_group: str) -> str:
    """`210987654321-churn-prediction`: one central group per source group and account."""
    return _sagemaker_name(f"{source_account}-{source_group}")


def model_card_name(central_group: str, central_version: int) -> str:
    """`210987654321-churn-prediction-v1`: one card per central model version."""
    suffix = f"-v{central_version}"
    return _sagemaker_name(central_group)[: _MAX_NAME - len(suffix)].rstrip("-") + suffix
