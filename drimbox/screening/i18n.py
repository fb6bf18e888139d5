"""The screening pages' words, French (default) and English, side by side as in :mod:`drimbox.web.i18n`."""

from __future__ import annotations

from dataclasses import dataclass

from drimbox.web.i18n import LANGUAGES, Translator

__all__ = ["SCREENING_CATALOGUE", "ScreeningTranslator"]

SCREENING_CATALOGUE: dict[str, tuple[str, str]] = {
    "sc.worklist.title": ("Dépistage — mes secondes lectures", "Screening — my second reads"),
    "sc.worklist.empty": ("Aucun cas ne vous est attribué.", "No case is assigned to you."),
    "sc.col.patient": ("Patiente", "Patient"),
    "sc.col.status": ("État", "Status"),
    "sc.col.age": ("Attente", "Waiting"),
    "sc.col.priority": ("Priorité", "Priority"),
    "sc.col.ready": ("Prêt", "Ready"),
    "sc.col.reader": ("Lecteur L2", "L2 reader"),
    "sc.col.requested": ("Demandé le", "Requested"),
    "sc.col.result": ("Résultat", "Result"),
    "sc.col.discordant": ("Discordance", "Discordant"),
    "sc.ready.yes": ("prêt (en cache)", "ready (cached)"),
    "sc.ready.no": ("en cours de préchargement", "prefetching"),
    "sc.hours": ("{hours} h", "{hours} h"),
    "sc.open": ("Lire", "Read"),
    "sc.status.requested": ("demandé", "requested"),
    "sc.status.waiting": ("en attente", "waiting"),
    "sc.status.prefetched": ("préchargé", "prefetched"),
    "sc.status.in_reading": ("en lecture", "in reading"),
    "sc.status.done": ("terminé", "done"),
    "sc.priority.routine": ("normale", "routine"),
    "sc.priority.urgent": ("urgente", "urgent"),
    "sc.case.title": ("Seconde lecture", "Second read"),
    "sc.case.view": ("Ouvrir les images (examen et antérieur)", "Open the images (exam and prior)"),
    "sc.case.priors": ("Antérieurs préchargés : {count}", "Priors prefetched: {count}"),
    "sc.case.prefetch_error": ("Préchargement en échec : {error}", "Prefetch failed: {error}"),
    "sc.reading.title": ("Lecture L2", "L2 reading"),
    "sc.reading.date": ("Date de lecture", "Reading date"),
    "sc.reading.R": ("Sein droit", "Right breast"),
    "sc.reading.L": ("Sein gauche", "Left breast"),
    "sc.reading.category": ("Classification ACR (1-5)", "ACR category (1-5)"),
    "sc.reading.density": ("Densité (A-D)", "Density (A-D)"),
    "sc.reading.outcome": ("Conclusion", "Outcome"),
    "sc.reading.notes": ("Remarques cliniques", "Clinical notes"),
    "sc.reading.submit": ("Enregistrer la seconde lecture", "Record the second reading"),
    "sc.outcome.normal": ("normal", "normal"),
    "sc.outcome.recall": ("rappel pour bilan diagnostique", "recall for diagnostic work-up"),
    "sc.outcome.technical_recall": ("rappel technique (images illisibles)", "technical recall (images not readable)"),
    "sc.done": ("Seconde lecture enregistrée et transmise au site L1 et au programme.",
                "Second reading recorded and sent to the L1 site and the programme."),
    "sc.discordant": ("Lectures L1 / L2 discordantes", "L1 / L2 readings discordant"),
    "sc.concordant": ("Lectures concordantes", "Readings concordant"),
    "sc.delivery_error": ("Transmission incomplète : {error}", "Delivery incomplete: {error}"),
    "sc.invalid": ("Lecture refusée", "Reading refused"),
    "sc.programme.title": ("Programme de dépistage — tableau de bord", "Screening programme — dashboard"),
    "sc.programme.turnaround": ("Délai demande → résultat : médiane {median}, 90e centile {p90} ({count} résultats)",
                                "Turnaround request → result: median {median}, 90th percentile {p90} "
                                "({count} results)"),
    "sc.programme.none": ("pas encore de résultat", "no result yet"),
    "sc.programme.csv": ("Exporter en CSV", "Export as CSV"),
    "sc.programme.load": ("Charge par lecteur (ouverts / terminés)", "Load per reader (open / done)"),
    "sc.programme.assign": ("Attribuer (tour de rôle)", "Assign (round-robin)"),
    "sc.results.title": ("Résultats des secondes lectures", "Second-read results"),
    "sc.results.empty": ("Aucun résultat reçu.", "No result received."),
}
"""Every key in both languages."""


@dataclass(frozen=True)
class ScreeningTranslator:
    """The screening words first, then the node's own (the frame of :file:`base.html`)."""

    base: Translator

    @property
    def language(self) -> str:
        return self.base.language

    def __call__(self, key: str, /, **params: object) -> str:
        if key in SCREENING_CATALOGUE:
            text = SCREENING_CATALOGUE[key][LANGUAGES.index(self.base.language)]
            return text.format(**params) if params else text
        return self.base(key, **params)

    def __getattr__(self, name: str) -> object:
        return getattr(self.base, name)
