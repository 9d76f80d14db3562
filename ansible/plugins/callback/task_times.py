"""Where a play's time goes: each task's wall time (first host start to the
next task's start, as ansible's linear strategy runs them), summed per role,
printed at the end of the play. ansible.posix's profile_tasks does this, but
that collection is not among our pinned dependencies; this is the small part
of it we use (issue 15: the three-zones deploy has to fit CI's budget).

Enabled with ANSIBLE_CALLBACKS_ENABLED=task_times (scripts/zones.sh deploy
does); EXCHANGE_TASK_TIMES_TOP says how many tasks to list (default 25).
"""

import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_times
type: aggregate
short_description: each task's and each role's wall time, at the end of the play
description: Lists the slowest tasks and the time per role when the play ends.
requirements:
  - enabled in ansible.cfg or with ANSIBLE_CALLBACKS_ENABLED=task_times
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._current = None  # (label, role, started)
        self._times = []  # (seconds, label, role)
        self._started = time.monotonic()

    def _close_current(self):
        if self._current is not None:
            label, role, started = self._current
            self._times.append((time.monotonic() - started, label, role))
            self._current = None

    def _open(self, task):
        self._close_current()
        role = task._role.get_name() if task._role else "(play)"
        # get_name() already starts with the role's name when there is one.
        self._current = (task.get_name(), role, time.monotonic())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._open(task)

    def v2_playbook_on_stats(self, stats):
        self._close_current()
        total = time.monotonic() - self._started
        top = int(os.environ.get("EXCHANGE_TASK_TIMES_TOP", "25"))
        per_role = {}
        for seconds, _, role in self._times:
            per_role[role] = per_role.get(role, 0.0) + seconds
        self._display.display(f"task_times: play took {total:.1f} s; slowest tasks:")
        for seconds, label, _ in sorted(self._times, reverse=True)[:top]:
            self._display.display(f"  {seconds:8.1f} s  {label}")
        self._display.display("task_times: per role:")
        for role, seconds in sorted(per_role.items(), key=lambda item: -item[1]):
            self._display.display(f"  {seconds:8.1f} s  {role}")
