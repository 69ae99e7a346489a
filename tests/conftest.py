"""Shared test set-up: offline hub, few threads, the `slow` marker."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # CI skips tests marked slow; each one's code is also covered by a faster test.
    if os.environ.get("CI") or os.environ.get("SKIP_SLOW"):
        skip = pytest.mark.skip(reason="slow test; skipped in CI (a faster test covers the same code)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
