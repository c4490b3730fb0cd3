"""The task lifecycle is a declared table of moves, and every status change goes through it."""

import itertools

import pytest
import sqlalchemy as sa

from database import db
from jobs import (
    TASK_TRANSITIONS,
    InvalidTransition,
    Task,
    TaskStatus,
    check_transitions,
    fail_all_active,
)
from notifications import Notification

ALL_MOVES = list(itertools.product(TaskStatus, repeat=2))


def add_task(app, user_id, status, task_id="t1") -> str:
    with app.app_context():
        db.session.add(
            Task(id=task_id, name="export_posts", description="x", user_id=user_id, status=status)
        )
        db.session.commit()
    return task_id


def status_of(app, task_id) -> TaskStatus:
    with app.app_context():
        return db.session.scalar(sa.select(Task.status).where(Task.id == task_id))


def test_the_table_names_every_state_and_finished_is_final():
    assert set(TASK_TRANSITIONS) == set(TaskStatus)
    for state in TaskStatus.terminal():
        assert TASK_TRANSITIONS[state] == frozenset()
    # What the code relies on: a queued task can start, and a running one can be re-queued
    # when its consumer dies.
    assert TaskStatus.RUNNING in TASK_TRANSITIONS[TaskStatus.QUEUED]
    assert TaskStatus.QUEUED in TASK_TRANSITIONS[TaskStatus.RUNNING]


def test_a_table_with_a_gap_or_a_way_out_of_done_is_refused():
    missing = {k: v for k, v in TASK_TRANSITIONS.items() if k != TaskStatus.CANCELLED}
    with pytest.raises(InvalidTransition, match="without an entry"):
        check_transitions(missing)
    reopened = {**TASK_TRANSITIONS, TaskStatus.DONE: frozenset({TaskStatus.QUEUED})}
    with pytest.raises(InvalidTransition, match="final"):
        check_transitions(reopened)


@pytest.mark.parametrize(("start", "to"), ALL_MOVES, ids=[f"{a}-{b}" for a, b in ALL_MOVES])
def test_change_makes_exactly_the_moves_in_the_table(app, users, start, to):
    task_id = add_task(app, users["alice"], start)
    with app.app_context():
        if to in TASK_TRANSITIONS[start]:
            task = Task.change(task_id, [start], status=to)
            assert task is not None and task.status == to
        else:
            with pytest.raises(InvalidTransition):
                Task.change(task_id, [start], status=to)
    assert status_of(app, task_id) == (to if to in TASK_TRANSITIONS[start] else start)


def test_a_finished_task_cannot_even_be_touched(app, users):
    task_id = add_task(app, users["alice"], TaskStatus.DONE)
    with app.app_context(), pytest.raises(InvalidTransition):
        Task.change(task_id, [TaskStatus.DONE], message="edited")


def test_failing_every_active_task_tells_each_owner(app, users):
    queued = add_task(app, users["alice"], TaskStatus.QUEUED, "q")
    running = add_task(app, users["bob"], TaskStatus.RUNNING, "r")
    done = add_task(app, users["carol"], TaskStatus.DONE, "d")
    with app.app_context():
        assert fail_all_active("Stopped by a restore.") == 2
        notified = {
            (note.user_id, note.get_data()["task_id"], note.get_data()["status"])
            for note in db.session.scalars(
                sa.select(Notification).where(Notification.name == "task_progress")
            )
        }
    assert notified == {
        (users["alice"], queued, TaskStatus.FAILED),
        (users["bob"], running, TaskStatus.FAILED),
    }
    assert status_of(app, done) == TaskStatus.DONE
    assert {status_of(app, queued), status_of(app, running)} == {TaskStatus.FAILED}
