"""backbeat: background jobs, recurring jobs and cron, with SLAs.

The public names are the ones below; every other module is internal.
"""

__version__ = "0.1.0"

from backbeat.app import App
from backbeat.client import Client
from backbeat.clock import Clock, ManualClock, SystemClock
from backbeat.context import JobContext, Next, current_job
from backbeat.errors import (
    BackbeatError,
    ConfigError,
    EmitError,
    EnqueueError,
    EventError,
    EventNotFound,
    JobCancelled,
    JobFailed,
    JobNotFound,
    PayloadError,
    RateLimited,
    Retry,
    ScheduleError,
    ScheduleNotFound,
    StoreError,
    TaskDefinitionError,
    TaskNotFound,
)
from backbeat.events import Event
from backbeat.jobs import Job
from backbeat.tasks import Task
from backbeat.types import JobState

__all__ = [
    "App",
    "BackbeatError",
    "Client",
    "Clock",
    "ConfigError",
    "EmitError",
    "EnqueueError",
    "Event",
    "EventError",
    "EventNotFound",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobState",
    "ManualClock",
    "Next",
    "PayloadError",
    "RateLimited",
    "Retry",
    "ScheduleError",
    "ScheduleNotFound",
    "StoreError",
    "SystemClock",
    "Task",
    "TaskDefinitionError",
    "TaskNotFound",
    "__version__",
    "current_job",
]
