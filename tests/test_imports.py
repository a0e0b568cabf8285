"""Every module imports on its own, in a fresh interpreter: no import cycle hides behind the
order in which the app happens to import things."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "categories", "embeddings", "federated")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _import_alone(module: str) -> str | None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return None if result.returncode == 0 else f"{module}: {result.stderr.strip()[-400:]}"


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    modules = _modules()
    assert "gateway.http.chat" in modules and "gateway.store.events" in modules
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [failure for failure in pool.map(_import_alone, modules) if failure]
    assert not failures, "\n".join(failures)


def test_settings_are_cheap_to_import() -> None:
    # Value objects only: none of the heavy libraries behind them (import-linter keeps the
    # direct imports out; this catches one pulled in by a package's __init__).
    code = (
        "import sys, gateway.settings; "
        "heavy = {'numpy', 'sqlalchemy', 'starlette', 'litellm', 'onnxruntime', 'torch', "
        "'hnswlib'} & set(sys.modules); print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


SERVING = """
import asyncio, os, sys, tempfile
from gateway.runtime import running
from gateway.settings import Settings

store = f"sqlite:///{tempfile.mkdtemp()}/gateway.db"
settings = Settings.from_dict(
    {"store": {"url": store}, "embedding": {"cache_dir": sys.argv[1]}},
    {"GATEWAY_TENANT_SALT": "s"},
)

async def serve_once():
    async with running(settings):
        pass

asyncio.run(serve_once())
print(sorted({"torch", "transformers", "sentence_transformers", "onnx"} & set(sys.modules)))
"""


def test_serving_imports_no_export_tooling(model_cache: Path) -> None:
    # The first start exports what the gateway serves by default (the shipped trained model,
    # int8 on the CPU) into `model_cache`, whichever tests ran before; a gateway that starts
    # with that cache needs ONNX Runtime and tokenizers only.
    def start() -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", SERVING, str(model_cache)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.strip().splitlines()

    start()
    assert start()[-1] == "[]"
