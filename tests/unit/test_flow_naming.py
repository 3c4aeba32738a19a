"""Queue ids and task names (triggers/flow/naming.py): always what Cloud Tasks accepts, and
unique where uniqueness is the point (one launch task per ledger key, one queue per rule)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from triggers.flow import naming
from triggers.rules.schema import RULE_NAME


@pytest.mark.parametrize(
    ("rule", "queue"),
    [
        ("nightly", "triggers-nightly"),
        ("csv_ingest", "triggers-csv-ingest"),
        ("a-b_c-9", "triggers-a-b-c-9"),
        ("x" * 63, "triggers-" + "x" * 63),  # the longest rule name fits whole
    ],
)
def test_default_queue_id_is_the_rule_name_made_a_queue_id(rule, queue):
    assert RULE_NAME.match(rule)
    assert naming.default_queue_id(rule) == queue
    assert naming.is_queue_id(queue)


def test_a_name_past_100_characters_is_cut_and_told_apart_by_a_hash():
    one, two = "a" * 120 + "1", "a" * 120 + "2"
    first, second = naming.default_queue_id(one), naming.default_queue_id(two)
    assert len(first) == len(second) == 100 and first != second
    assert naming.is_queue_id(first) and naming.is_queue_id(second)
    assert first.endswith("-" + hashlib.sha256(one.encode()).hexdigest()[:8])
    assert first.startswith("triggers-aaaa")


@pytest.mark.parametrize("queue", ["", "a_b", "a.b", "q" * 101, "ümlaut"])
def test_queue_ids_cloud_tasks_refuses(queue):
    assert not naming.is_queue_id(queue)


def test_launch_task_name_is_the_ledger_key_and_the_claim_time():
    key = hashlib.sha256(b"x").hexdigest()
    claimed = datetime(2026, 12, 5, 4, 30, 0, 123456, tzinfo=UTC)
    name = naming.launch_task_name(key, claimed)
    assert name == f"l-{key}-{int(claimed.timestamp() * 1000)}" == f"l-{key}-1796445000123"
    assert naming.TASK_ID.fullmatch(name)
    # a later occurrence of the same key (a new record) gets a name of its own
    assert naming.launch_task_name(key, claimed + timedelta(milliseconds=1)) != name
    for wrong in ("", key.upper(), key[:-1], key + "0", "../" + key[3:]):
        with pytest.raises(naming.InvalidName, match="is not a sha256 hex digest"):
            naming.launch_task_name(wrong, claimed)


def test_batch_task_names_the_timer_and_the_early_seal_apart():
    assert naming.batch_task_name("20261205-ab_c") == "b-20261205-ab_c"
    assert naming.batch_task_name("20261205-ab_c", sealed=True) == "s-20261205-ab_c"
    assert naming.batch_task_name("x" * 498) == "b-" + "x" * 498  # 500, the limit
    for wrong in ("", "a/b", "a b", "x" * 499):
        with pytest.raises(naming.InvalidName, match="cannot name a task"):
            naming.batch_task_name(wrong)


def test_task_id_of_a_full_name_or_an_id():
    full = "projects/p/locations/europe-west1/queues/q/tasks/l-abc"
    assert naming.task_id(full) == naming.task_id("l-abc") == "l-abc"
