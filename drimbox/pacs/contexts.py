"""Presentation contexts the node proposes (as SCU) and accepts (as SCP).

An association carries at most 128 presentation contexts (PS3.8 §9.3.2.2: odd IDs 1-255), a
limit on what a *requestor* proposes. So:

- queries use a fixed small set (Verification, Study Root FIND and MOVE);
- a C-GET proposes one storage context per SOP class the walk reported (native syntaxes), then one
  context per (SOP class, compressed syntax) in order of preference while room is left, so that
  the PACS can send every file in its stored syntax, without transcoding;
- a C-STORE proposes exactly the (SOP class, transfer syntax) pairs of the files it sends
  (chunked sending needs an exact match), in batches of 128;
- as SCP the node accepts every storage SOP class pynetdicom knows, in every syntax below: the
  requestor's limit does not apply to what an acceptor supports.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from pydicom.uid import (
    JPEG2000,
    UID,
    BasicTextSRStorage,
    BreastTomosynthesisImageStorage,
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EncapsulatedPDFStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    EnhancedPETImageStorage,
    EnhancedSRStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    KeyObjectSelectionDocumentStorage,
    MammographyCADSRStorage,
    MRImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
    XRayRadiationDoseSRStorage,
    XRayRadiofluoroscopicImageStorage,
)
from pynetdicom import AllStoragePresentationContexts, build_context, build_role
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext

# pynetdicom generates its service SOP class constants at import time: mypy cannot see them.
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from drimbox.errors import NoAcceptableContext

__all__ = [
    "ACCEPTED_SYNTAXES",
    "COMPRESSED_SYNTAXES",
    "MAX_CONTEXTS",
    "MODALITY_SOP_CLASSES",
    "NATIVE_SYNTAXES",
    "RADIOLOGY_STORAGE",
    "STUDY_ROOT_FIND",
    "STUDY_ROOT_GET",
    "STUDY_ROOT_MOVE",
    "VERIFICATION",
    "RetrievePlan",
    "query_contexts",
    "retrieve_plan",
    "scp_contexts",
    "sop_classes_for_modality",
    "store_batches",
]

STUDY_ROOT_FIND: UID = StudyRootQueryRetrieveInformationModelFind
STUDY_ROOT_GET: UID = StudyRootQueryRetrieveInformationModelGet
STUDY_ROOT_MOVE: UID = StudyRootQueryRetrieveInformationModelMove
VERIFICATION: UID = Verification

MAX_CONTEXTS = 128
"""Presentation contexts one A-ASSOCIATE-RQ can carry (PS3.8 §9.3.2.2)."""

NATIVE_SYNTAXES: tuple[UID, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

COMPRESSED_SYNTAXES: tuple[UID, ...] = (
    # Lossless first: a retrieval must not degrade what the PACS holds.
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
    RLELossless,
    JPEGLossless,
    DeflatedExplicitVRLittleEndian,
    # Lossy: proposed so that lossy-stored images travel as stored, not decompressed.
    JPEG2000,
    JPEGLSNearLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)
"""Encapsulated (and deflated) syntaxes, in the order the node prefers to receive them."""

ACCEPTED_SYNTAXES: tuple[UID, ...] = (*NATIVE_SYNTAXES, ExplicitVRBigEndian, *COMPRESSED_SYNTAXES)
"""Everything the node's SCP accepts; data sets are stored as received, never decoded."""

RADIOLOGY_STORAGE: tuple[str, ...] = (
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    BreastTomosynthesisImageStorage,
    CTImageStorage,
    EnhancedCTImageStorage,
    MRImageStorage,
    EnhancedMRImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    EnhancedPETImageStorage,
    SecondaryCaptureImageStorage,
    XRayAngiographicImageStorage,
    XRayRadiofluoroscopicImageStorage,
    KeyObjectSelectionDocumentStorage,
    BasicTextSRStorage,
    EnhancedSRStorage,
    ComprehensiveSRStorage,
    MammographyCADSRStorage,
    XRayRadiationDoseSRStorage,
    EncapsulatedPDFStorage,
    GrayscaleSoftcopyPresentationStateStorage,
)
"""Storage SOP classes a radiology PACS commonly holds (all accepted by the node's SCP)."""

_DOCUMENTS = (KeyObjectSelectionDocumentStorage, GrayscaleSoftcopyPresentationStateStorage)
MODALITY_SOP_CLASSES: Mapping[str, tuple[str, ...]] = {
    "MG": (
        DigitalMammographyXRayImageStorageForPresentation,
        DigitalMammographyXRayImageStorageForProcessing,
        BreastTomosynthesisImageStorage,
    ),
    "CT": (CTImageStorage, EnhancedCTImageStorage),
    "MR": (MRImageStorage, EnhancedMRImageStorage),
    "CR": (ComputedRadiographyImageStorage,),
    "DX": (DigitalXRayImageStorageForPresentation, DigitalXRayImageStorageForProcessing),
    "US": (UltrasoundImageStorage, UltrasoundMultiFrameImageStorage),
    "NM": (NuclearMedicineImageStorage,),
    "PT": (PositronEmissionTomographyImageStorage, EnhancedPETImageStorage),
    "XA": (XRayAngiographicImageStorage,),
    "RF": (XRayRadiofluoroscopicImageStorage,),
    "OT": (SecondaryCaptureImageStorage,),
    "SC": (SecondaryCaptureImageStorage,),
    "SR": (
        BasicTextSRStorage,
        EnhancedSRStorage,
        ComprehensiveSRStorage,
        MammographyCADSRStorage,
        XRayRadiationDoseSRStorage,
    ),
    "KO": (KeyObjectSelectionDocumentStorage,),
    "PR": (GrayscaleSoftcopyPresentationStateStorage,),
    "DOC": (EncapsulatedPDFStorage,),
}
"""SOP classes to expect in a series of a modality, when the PACS does not report SOP Class UIDs
in IMAGE-level C-FIND answers (an optional return key: DCMTK ``dcmqrscp`` leaves it out)."""


def sop_classes_for_modality(modality: str) -> tuple[str, ...]:
    """SOP classes a series of ``modality`` may hold (every radiology class when unknown)."""
    return MODALITY_SOP_CLASSES.get(modality.upper(), RADIOLOGY_STORAGE) + _DOCUMENTS


def query_contexts() -> list[PresentationContext]:
    """Verification and Study Root FIND/MOVE: what pooled query associations carry."""
    models = (Verification, StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove)
    return [build_context(uid, list(NATIVE_SYNTAXES)) for uid in models]


def scp_contexts() -> list[PresentationContext]:
    """Verification and every storage SOP class, each in :data:`ACCEPTED_SYNTAXES`."""
    storage = [cx.abstract_syntax for cx in AllStoragePresentationContexts]
    extra = [uid for uid in RADIOLOGY_STORAGE if uid not in storage]
    return [build_context(uid, list(ACCEPTED_SYNTAXES)) for uid in [Verification, *storage, *extra]]


@dataclass(frozen=True)
class RetrievePlan:
    """Contexts and SCP/SCU role selection items of one C-GET association."""

    contexts: tuple[PresentationContext, ...]
    roles: tuple[SCP_SCU_RoleSelectionNegotiation, ...]
    sop_classes: tuple[str, ...]
    compressed_syntaxes: Mapping[str, tuple[UID, ...]]
    """For each SOP class, the encapsulated syntaxes that fitted in the 128 contexts."""


def retrieve_plan(sop_classes: Iterable[str]) -> RetrievePlan:
    """Contexts for a C-GET of instances of ``sop_classes`` (PS3.4 C.4.3.1, PS3.7 D.3.3.4).

    Every class gets a native context (explicit or implicit little endian, which any PACS can
    produce); then, syntax by syntax in :data:`COMPRESSED_SYNTAXES` order, every class gets one
    context for that syntax, until the 128 contexts are used. The node takes the SCP role for each
    storage class (role selection), as C-GET sub-operations come back on the same association.

    Raises
    ------
    NoAcceptableContext
        When there are more SOP classes than contexts (127 next to the GET model's).
    """
    classes = tuple(dict.fromkeys(sop_classes))
    budget = MAX_CONTEXTS - 1
    if len(classes) > budget:
        raise NoAcceptableContext(
            f"a C-GET of {len(classes)} SOP classes needs more than the {MAX_CONTEXTS} presentation "
            f"contexts one association can carry; retrieve fewer series at a time"
        )
    contexts = [build_context(StudyRootQueryRetrieveInformationModelGet, list(NATIVE_SYNTAXES))]
    contexts += [build_context(uid, list(NATIVE_SYNTAXES)) for uid in classes]
    compressed: dict[str, list[UID]] = {uid: [] for uid in classes}
    for syntax in COMPRESSED_SYNTAXES:
        for uid in classes:
            if len(contexts) == MAX_CONTEXTS:
                break
            contexts.append(build_context(uid, [syntax]))
            compressed[uid].append(syntax)
    roles = tuple(build_role(uid, scp_role=True) for uid in classes)
    return RetrievePlan(
        contexts=tuple(contexts),
        roles=roles,
        sop_classes=classes,
        compressed_syntaxes={uid: tuple(s) for uid, s in compressed.items()},
    )


def store_batches(pairs: Iterable[tuple[str, str]]) -> Iterator[list[PresentationContext]]:
    """Group (SOP class, transfer syntax) pairs into lists of at most 128 exact-match contexts."""
    batch: list[PresentationContext] = []
    for sop_class, syntax in dict.fromkeys(pairs):
        if len(batch) == MAX_CONTEXTS:
            yield batch
            batch = []
        batch.append(build_context(sop_class, [syntax]))
    if batch:
        yield batch
