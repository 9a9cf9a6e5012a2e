"""Every journey step kind, in the order config.json's errors name their keys."""

from __future__ import annotations

from moodleload.steps.call import CallStep
from moodleload.steps.logout import LogoutStep
from moodleload.steps.page import PageStep
from moodleload.steps.submit import SubmitStep

STEP_KINDS = (PageStep, SubmitStep, CallStep, LogoutStep)
