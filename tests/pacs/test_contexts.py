"""Presentation contexts: what the node proposes for C-GET, and what its SCP accepts."""

from __future__ import annotations

import pytest
from pydicom.uid import (
    JPEG2000,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    JPEGLSLossless,
)
from pynetdicom import AllStoragePresentationContexts

from drimbox.errors import NoAcceptableContext
from drimbox.pacs.contexts import (
    ACCEPTED_SYNTAXES,
    COMPRESSED_SYNTAXES,
    MAX_CONTEXTS,
    NATIVE_SYNTAXES,
    RADIOLOGY_STORAGE,
    STUDY_ROOT_GET,
    retrieve_plan,
    scp_contexts,
)


def test_one_class_gets_every_syntax_in_its_own_context() -> None:
    plan = retrieve_plan([DigitalMammographyXRayImageStorageForPresentation])
    get, native, *compressed = plan.contexts
    assert get.abstract_syntax == STUDY_ROOT_GET
    assert native.transfer_syntax == list(NATIVE_SYNTAXES)
    assert [cx.transfer_syntax for cx in compressed] == [[ts] for ts in COMPRESSED_SYNTAXES]
    assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in plan.roles] == [
        (DigitalMammographyXRayImageStorageForPresentation, False, True)
    ]


def test_many_classes_fill_128_contexts_lossless_first() -> None:
    plan = retrieve_plan(RADIOLOGY_STORAGE)
    assert len(plan.contexts) == MAX_CONTEXTS
    assert all(NATIVE_SYNTAXES == tuple(cx.transfer_syntax) for cx in plan.contexts[1 : 1 + len(RADIOLOGY_STORAGE)])
    per_class = plan.compressed_syntaxes[RADIOLOGY_STORAGE[0]]
    assert per_class[:2] == (JPEGLosslessSV1, JPEGLSLossless)
    assert all(JPEG2000 not in v for v in plan.compressed_syntaxes.values())  # lossy ones did not fit


def test_too_many_classes_is_a_clear_error() -> None:
    classes = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts][:128]
    with pytest.raises(NoAcceptableContext, match="128 SOP classes needs more than the 128 presentation contexts"):
        retrieve_plan(classes)


def test_scp_accepts_radiology_classes_in_every_syntax() -> None:
    accepted = {str(cx.abstract_syntax): cx.transfer_syntax for cx in scp_contexts()}
    for sop_class in (*RADIOLOGY_STORAGE, CTImageStorage):
        assert accepted[sop_class] == list(ACCEPTED_SYNTAXES)
    assert ExplicitVRBigEndian in ACCEPTED_SYNTAXES and ExplicitVRLittleEndian in ACCEPTED_SYNTAXES
    assert len(accepted) > MAX_CONTEXTS  # the 128 limit binds requestors only
