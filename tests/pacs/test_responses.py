"""Recovery from pynetdicom#875: a response taken off the queue by another reader is not lost.

pynetdicom's association reactor sometimes takes the first response of a request (about one
request in 500 under load). Here a helper thread plays the reactor, deterministically: it waits on
the association's message queue (``assoc.dimse.get_msg``) before the request is sent, and takes
the response first.
"""

from __future__ import annotations

import threading
import time

import pytest

from drimbox.config import DimseSettings, LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.pacs import QueryLevel, build_query
from drimbox.pacs.connect import Connector
from drimbox.pacs.contexts import query_contexts
from drimbox.pacs.exchange import Exchange
from drimbox.pacs.responses import Link
from drimbox.testdata import GeneratedStudy


def _steal_next_message(link: Link) -> threading.Thread:
    thief = threading.Thread(target=link.assoc.dimse.get_msg, kwargs={"block": True}, daemon=True)
    thief.start()
    time.sleep(0.2)  # the thief now waits on the queue, ahead of the requester
    return thief


@pytest.fixture()
def link(node_ae: LocalAE, orthanc_a_clean: OrthancProcess, dimse_settings: DimseSettings) -> Link:
    """A fresh query association to Orthanc (DIMSE timeout 10 s)."""
    connector = Connector(node_ae, orthanc_a_clean.remote_ae(timeout_s=10), dimse_settings)
    return connector.associate(query_contexts())


def test_stolen_echo_response_is_recovered_quickly(link: Link) -> None:
    exchange = Exchange("PACS", 10.0)
    thief = _steal_next_message(link)
    started = time.monotonic()
    exchange.echo(link, 7)
    assert time.monotonic() - started < 2.0  # not the 10 s DIMSE timeout
    thief.join(1)
    assert not link.reusable


def test_stolen_first_match_is_still_returned(
    link: Link, orthanc_a_clean: OrthancProcess, mg_study: GeneratedStudy, mg_prior: GeneratedStudy
) -> None:
    orthanc_a_clean.upload([*mg_study.files, *mg_prior.files])
    exchange = Exchange("PACS", 10.0)
    query = build_query(QueryLevel.STUDY, {"StudyInstanceUID": None})
    thief = _steal_next_message(link)
    answers = list(exchange.find(link, query, 9))
    thief.join(1)
    assert {a.StudyInstanceUID for a in answers} == {mg_study.study_instance_uid, mg_prior.study_instance_uid}
    assert link.reusable  # only a pending response was taken: the final one came through
    link.assoc.release()
