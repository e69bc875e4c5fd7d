"""The media pipeline: a task's input files onto the pod, its output files into a durable store."""

from __future__ import annotations

from worker.fleet.media.fetch import AddressGuard, FetchSettings, URLFetcher
from worker.fleet.media.outputs import OutputPolicy
from worker.fleet.media.pipeline import MediaPipeline, MediaSettings
from worker.fleet.media.s3 import S3Store
from worker.fleet.media.store import FileStore, OutputStore

__all__ = [
    "AddressGuard",
    "FetchSettings",
    "FileStore",
    "MediaPipeline",
    "MediaSettings",
    "OutputPolicy",
    "OutputStore",
    "S3Store",
    "URLFetcher",
]
