"""The Firestore ledger when Firestore goes away: every call ends within its deadline.

The official Firestore emulator sits behind a TCP proxy on 127.0.0.1 (tests/integration/
tcpproxy.py) that the test cuts, either resetting connections (a server that is down) or
black-holing them (a partition: only a deadline ends a call), and restores. Without explicit
deadlines each call hung for the client's default of about a minute (issue 11).

"Within its deadline" is checked as the behaviour it is, not as a timing race: the call runs
in a thread that must finish inside Pub/Sub's push deadline (10 s here), far above the
ledger's own bound (deadline 1.5 s) and far below the client's default (60 s and retried).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import make_firestore_client
from tests.integration.conftest import eventually
from tests.integration.tcpproxy import TcpProxy
from triggers.events.model import EventRef
from triggers.ledger import Ledger, Status
from triggers.ledger.base import ClaimKind
from triggers.ledger.firestore import FirestoreBackend
from triggers.plan import Overrides, RunRequest

pytestmark = pytest.mark.integration

PUSH_DEADLINE = 10.0  # a push subscription's default ack deadline, also its request timeout
DEADLINE = 1.5
RETRY = 1.0


@pytest.fixture
def proxy(firestore_emulator: str) -> Iterator[TcpProxy]:
    host, port = firestore_emulator.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        yield proxy


@pytest.fixture
def ledger(proxy: TcpProxy) -> Iterator[Ledger]:
    client = make_firestore_client(proxy.address, "demo-triggers-outage")
    backend = FirestoreBackend(
        client, collection=f"outage-{uuid.uuid4().hex[:8]}", deadline=DEADLINE, retry_seconds=RETRY
    )
    yield Ledger(backend)
    client.close()


def request(key: str) -> RunRequest:
    return RunRequest(
        rule="outage",
        job="projects/demo-project/locations/europe-west1/jobs/outage",
        overrides=Overrides(),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//test", type="t"),
    )


def ends_within_push_deadline(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    """Run `call` in a thread; fail unless it ends (returns or raises) within the push
    deadline. Returns what it raised (None if it returned) and how long it took."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(PUSH_DEADLINE)
    assert not thread.is_alive(), f"a ledger call still hangs after {PUSH_DEADLINE} s"
    return outcome.get("error"), outcome["seconds"]


@pytest.mark.parametrize("mode", ["reset", "blackhole"])
def test_every_ledger_call_fails_fast_during_a_cut_and_works_after(ledger, proxy, mode):
    claimed = ledger.claim(request("before"))
    assert claimed.kind is ClaimKind.NEW

    proxy.cut(mode)
    timings = {}
    for name, call in {
        "claim": lambda: ledger.claim(request(f"during-{mode}")),
        "get": lambda: ledger.get(claimed.record.key),
        "launched": lambda: ledger.launched(claimed, "projects/p/executions/e"),
        "list": lambda: ledger.list(rule="outage", limit=5),
    }.items():
        error, seconds = ends_within_push_deadline(call)
        assert error is not None, f"{name} succeeded although the ledger was cut off"
        timings[name] = round(seconds, 2)
    print(f"ledger calls during a {mode} cut (deadline {DEADLINE} s): {timings}")

    proxy.restore()
    # The client reconnects by itself (gRPC's reconnect backoff): poll, with a deadline.
    eventually(
        lambda: _claims(ledger, request(f"after-{mode}")),
        timeout=30,
        what="the ledger to answer again after the cut",
    )
    assert ledger.launched(claimed, "projects/p/executions/e") is True
    assert ledger.get(claimed.record.key).status is Status.LAUNCHED


def _claims(ledger: Ledger, req: RunRequest) -> bool:
    try:
        return ledger.claim(req).kind in (ClaimKind.NEW, ClaimKind.DUPLICATE)
    except Exception:
        return False


def test_a_transaction_begin_is_bounded_too(ledger, proxy):
    # replace() runs in a transaction: begin/commit take no retry argument in the client and
    # used its 60 s defaults; the backend bounds them through the client's API.
    first = ledger.claim(request("txn"))
    assert ledger.release(first, "retry later") is True
    proxy.cut("blackhole")
    error, seconds = ends_within_push_deadline(lambda: ledger.claim(request("txn")))
    assert error is not None
    print(
        f"a takeover's transaction during a blackhole ended after {seconds:.2f} s: {error!r}"[:300]
    )
    proxy.restore()
    eventually(
        lambda: _claims(ledger, request("txn-after")),
        timeout=30,
        what="the ledger to answer again",
    )
    taken = ledger.claim(request("txn"))
    assert taken.kind is ClaimKind.TAKEOVER and taken.record.attempts == 2
    assert taken.record.created_at <= datetime.now(UTC)


def test_a_claim_whose_create_lands_but_whose_reply_is_lost_is_recognised_as_its_own(
    ledger, proxy, firestore_emulator
):
    # GIVEN Firestore's replies held back: the claim's create reaches it and commits, and the
    # function hears nothing
    req = request("lost-reply")
    backend = ledger.backend
    assert ledger.get(req.ledger_key) is None  # the connection is up (HTTP/2 needs replies)
    backend.rpcs.clear()
    proxy.hold_replies()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(claim=ledger.claim(req)), daemon=True)
    thread.start()
    direct = make_firestore_client(firestore_emulator, "demo-triggers-outage")
    document = direct.collection(backend.collection).document(req.ledger_key)
    eventually(lambda: document.get().exists, timeout=5, what="the create to reach Firestore")
    # WHEN the connection then drops (the reply lost with it) and comes back
    proxy.cut("reset")
    proxy.restore()
    thread.join(PUSH_DEADLINE)
    direct.close()
    # THEN the client's retry of the create met the record it had itself written, and the
    # ledger knew it by its token: the claim is NEW, not a duplicate or busy (a conflict read
    # happened, so the retry did meet AlreadyExists)
    assert not thread.is_alive(), "the claim hangs"
    claim = result["claim"]
    assert claim.kind is ClaimKind.NEW
    assert backend.rpcs["read"] == 1
    assert ledger.get(req.ledger_key).token == claim.record.token


def test_an_outcome_whose_write_lands_but_whose_reply_is_lost_is_written_once(
    ledger, proxy, firestore_emulator
):
    # GIVEN a claim, and then Firestore's replies held back while its owner records the launch
    claim = ledger.claim(request("lost-outcome"))
    backend = ledger.backend
    backend.rpcs.clear()
    proxy.hold_replies()
    result: dict[str, Any] = {}
    execution = "projects/p/locations/r/jobs/j/executions/e-lost"
    thread = threading.Thread(
        target=lambda: result.update(written=ledger.launched(claim, execution)), daemon=True
    )
    thread.start()
    direct = make_firestore_client(firestore_emulator, "demo-triggers-outage")
    document = direct.collection(backend.collection).document(claim.record.key)
    eventually(
        lambda: (document.get().to_dict() or {}).get("status") == "launched",
        timeout=5,
        what="the update to reach Firestore",
    )
    # WHEN the connection drops with the reply and comes back
    proxy.cut("reset")
    proxy.restore()
    thread.join(PUSH_DEADLINE)
    direct.close()
    # THEN the retried precondition update failed (the update time is its own write's), the
    # token, still the claim's, let the transaction write it again: the outcome stands, and
    # the owner was told it wrote it
    assert not thread.is_alive(), "the update hangs"
    assert result["written"] is True
    assert backend.rpcs["begin"] == 1  # the fallback transaction ran
    stored = ledger.get(claim.record.key)
    assert stored.status is Status.LAUNCHED and stored.execution == execution
    assert stored.token == claim.record.token
