"""``JobRequest``: what one job on a pod is asked to do, typed and frozen, and the pod client's settings.

The pod client's entry points take one request instead of loose ``**options``: mypy checks
every caller, and a new per-job option is one field here (with its default), not a keyword
threaded through three layers. Hooks are not part of the request: they are observers
(:mod:`worker.comfyui.observer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.node_costs import DurationModel
from worker.comfyui.websocket_client import WebSocketSettings

__all__ = ["ExecutionPath", "JobRequest", "PodClientSettings"]

#: ``auto``: WebSocket first, REST polling when the socket cannot be used (at start or mid-job);
#: ``websocket``: the socket only (a :class:`TransportError` when it cannot be used);
#: ``polling``: ``POST /prompt`` then ``/history`` every ``poll_interval`` (the old behaviour)
ExecutionPath = Literal["auto", "websocket", "polling"]


@dataclass(frozen=True)
class JobRequest:
    workflow: Mapping[str, Any]
    #: the prompt id to submit under (None: a new uuid4); ours, so a lost reply can be recovered
    prompt_id: str | None = None
    #: the WebSocket clientId (None: a new uuid4)
    client_id: str | None = None
    #: the job's deadline in seconds (None: the client's ``job_timeout``)
    timeout: float | None = None
    extra_data: Mapping[str, Any] | None = None
    #: False: follow a prompt already on the pod instead of submitting it
    submit: bool = True
    #: look the prompt id up first: after a redelivery, follow the prompt already there, or
    #: return its result, instead of submitting again
    reattach: bool = False
    #: at most one progress update per this many seconds (the final one at once; 0: every change)
    progress_interval: float = 0.0
    #: expected node durations for the time estimate (the fleet's learned ones; None: priors)
    durations: DurationModel | None = None


@dataclass(frozen=True)
class PodClientSettings:
    http: HTTPSettings = field(default_factory=HTTPSettings)
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    #: REST polling period (today's behaviour: 2 s)
    poll_interval: float = 2.0
    #: while the socket is down mid-job (reconnecting, or after a fallback), the shortest pause
    #: between history probes, used when the estimated end is near (see ``probe_schedule``)
    fault_probe_interval: float = 0.3
    #: while on the WebSocket, how often history is probed in case the socket went deaf
    history_probe_interval: float = 5.0
    #: a prompt not started this long after its submission gets its queue position from /queue
    queued_probe_delay: float = 0.5
    #: the most often one process reads a pod's /queue for all its queued jobs
    queue_read_interval: float = 1.0
    #: a queued job's position is read again when the pod's queue changes, and at least this often
    queued_refresh_interval: float = 30.0
    #: after a completion event, how long ``{}`` from /history is retried (it is written just after)
    history_confirm_timeout: float = 3.0
    #: a job's own deadline when the caller gives none (None: no deadline)
    job_timeout: float | None = 3600.0
    #: the longest a wait goes without checking cancel and deadline
    wait_slice: float = 0.25
    #: probes finding the prompt neither queued nor in history before it is declared lost
    lost_prompt_checks: int = 2
    #: consecutive failed polls (5xx, transport) tolerated before the job fails
    max_poll_failures: int = 5
    health_timeout: float = 5.0
    #: the clean-up after a cancel or a deadline (look at /queue, delete or interrupt): each call
    #: gets one attempt within this, and all of them together twice this, so a hung pod cannot
    #: hold a cancelled job past the hard time limit
    abort_timeout: float = 2.0
    #: a good health check serves every job of the process on this pod this long
    health_max_age: float = 10.0
