"""The media settings block and the store it wires up."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ENV_VARS, Settings, SettingsError
from config.wiring import media_pipeline, output_store
from worker.comfyui.errors import WorkflowValidationError
from worker.fleet.media import FileStore, S3Store
from worker.fleet.media.fetch import AddressGuard


def test_no_store_by_default_keeps_todays_results() -> None:
    settings = Settings.from_env({})
    assert output_store(settings) is None
    media = media_pipeline(settings)
    assert media.store is None and media.fetcher.settings.max_bytes == 50 * 1024 * 1024
    assert media.fetcher.guard.allow == ()


def test_file_store(tmp_path: Path) -> None:
    store = output_store(Settings.from_env({"OUTPUT_STORE": (tmp_path / "out dir").as_uri()}))
    assert isinstance(store, FileStore) and store.root == (tmp_path / "out dir").resolve()


def test_s3_store_with_endpoint_region_and_limits() -> None:
    settings = Settings.from_env(
        {
            "OUTPUT_STORE": "s3://renders/comfy/prod",
            "OUTPUT_S3_ENDPOINT_URL": "http://minio.internal:9000",
            "OUTPUT_S3_REGION": "eu-central-1",
            "OUTPUT_PRESIGN_SECONDS": "600",
            "INPUT_URL_ALLOW": "10.0.0.0/8, minio.internal",
            "INPUT_MAX_BYTES": "1000",
            "OUTPUT_CLEANUP": "history",
        }
    )
    media = media_pipeline(settings)
    store = media.store
    assert isinstance(store, S3Store) and (store.bucket, store.prefix, store.url) == ("renders", "comfy/prod", "s3://renders/comfy/prod")
    assert store.client.meta.endpoint_url == "http://minio.internal:9000" and store.client.meta.region_name == "eu-central-1"
    assert media.settings.outputs.presign_seconds == 600 and media.settings.cleanup == "history"
    assert media.fetcher.guard.allow == ("10.0.0.0/8", "minio.internal") and media.fetcher.settings.max_bytes == 1000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OUTPUT_STORE": "ftp://host/x"}, "OUTPUT_STORE"),
        ({"OUTPUT_STORE": "file://relative/path"}, "OUTPUT_STORE"),
        ({"OUTPUT_STORE": "s3:///no-bucket"}, "OUTPUT_STORE"),
        ({"OUTPUT_STORE": "s3://key:secret@bucket/x"}, "OUTPUT_STORE"),
        ({"OUTPUT_STORE": "s3://:secret@bucket/x"}, "OUTPUT_STORE"),  # an empty user name is still userinfo
        ({"INPUT_FETCH_TIMEOUT": "0"}, "INPUT_FETCH_TIMEOUT"),  # every fetch would fail at once
        ({"OUTPUT_CLEANUP": "everything"}, "OUTPUT_CLEANUP"),
        ({"OUTPUT_INLINE_MAX_BYTES": "99999999"}, "OUTPUT_INLINE_MAX_BYTES"),
        ({"INPUT_MAX_BYTES": "0"}, "INPUT_MAX_BYTES"),
        ({"OUTPUT_STORE_ATTEMPTS": "0"}, "OUTPUT_STORE_ATTEMPTS"),
    ],
)
def test_bad_values_name_the_variable_not_the_secret(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env(env)
    assert named in str(exc.value) and "secret" not in str(exc.value)


def test_the_forbidden_address_error_names_the_setting_that_allows_it() -> None:
    # the message said MEDIA_INPUT_ALLOW, a variable that does not exist
    with pytest.raises(WorkflowValidationError) as exc:
        AddressGuard(resolver=lambda host, port: ["10.1.2.3"]).check("minio.internal", 9000)
    named = [var.name for var in ENV_VARS if var.name in str(exc.value)]
    assert named == ["INPUT_URL_ALLOW"]
