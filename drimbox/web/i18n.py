"""The pages' words in French (default) and English.

One catalogue, each key with both translations side by side, so that a string cannot exist in one
language only (a test renders every page in both). Parameters are ``str.format`` fields; values
are escaped by the templates, never here.

The language of a request: ``?lang=`` (kept in a cookie, and in the session when the app has one),
else the cookie, else the best of ``Accept-Language``, else the node's ``viewer.language``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from drimbox.web.ins import Problem

__all__ = ["CATALOGUE", "LANGUAGES", "LANG_COOKIE", "Language", "Translator", "choose_language", "translator"]

Language = Literal["fr", "en"]
LANGUAGES: tuple[Language, ...] = ("fr", "en")
LANG_COOKIE = "drimbox_lang"

CATALOGUE: dict[str, tuple[str, str]] = {
    # -- frame ------------------------------------------------------------------------------------
    "site.name": ("DRIM-Box — {node}", "DRIM-Box — {node}"),
    "skip": ("Aller au contenu", "Skip to content"),
    "lang.other": ("English", "Français"),
    "lang.other.label": ("Display in English", "Afficher en français"),
    "footer": ("Accès tracés. Images partagées via le réseau DRIM-M.",
               "Accesses are audited. Images shared through the DRIM-M network."),
    "back.patient": ("Retour aux examens du patient", "Back to the patient's exams"),
    "retry": ("Réessayer", "Retry"),
    # -- contextual call refusals -----------------------------------------------------------------
    "call.invalid.title": ("Appel contextuel refusé : données du patient invalides",
                           "Contextual call refused: invalid patient data"),
    "call.invalid.intro": (
        "Le logiciel appelant a transmis des traits d'identité que le nœud ne peut pas utiliser. "
        "Aucune donnée n'a été recherchée. Corrigez les points suivants puis relancez l'appel :",
        "The calling software sent identity traits the node cannot use. No data was looked up. "
        "Fix the following and call again:"),
    "call.invalid.count": ("{count} problème(s)", "{count} problem(s)"),
    "call.consent.title": ("Accès refusé : information et consentement du patient",
                           "Access refused: patient information and consent"),
    "call.consent.body": (
        "Avant toute consultation de ses images, le patient doit avoir été informé et ne pas s'y être "
        "opposé (InformationEtConsentement = true). Aucune donnée n'a été recherchée.",
        "Before their images are consulted, the patient must have been informed and must not have "
        "objected (InformationEtConsentement = true). No data was looked up."),
    "call.consent.value": ("Valeur reçue : « {value} »", "Value received: “{value}”"),
    # -- problems (drimbox.web.ins) -----------------------------------------------------------------
    "problem.missing": ("Champ obligatoire absent ou vide.", "Required field missing or empty."),
    "problem.duplicate": ("Champ transmis plusieurs fois avec des valeurs différentes.",
                          "Field sent several times with different values."),
    "problem.too_long": ("Valeur trop longue (au plus {max} caractères).",
                         "Value too long (at most {max} characters)."),
    "problem.ins.length": ("L'INS « {value} » a {length} caractères ; il en faut 15 (13 et une clé de 2 chiffres).",
                           "The INS “{value}” has {length} characters; it needs 15 (13 and a 2-digit key)."),
    "problem.ins.format": (
        "L'INS « {value} » n'a pas la forme d'un NIR ou d'un NIA : 13 chiffres (2A/2B pour une naissance en "
        "Corse) suivis d'une clé de 2 chiffres.",
        "The INS “{value}” is not shaped like a NIR or NIA: 13 digits (2A/2B for a birth in Corsica) "
        "followed by a 2-digit key."),
    "problem.ins.first_digit": ("Le premier chiffre « {digit} » de l'INS « {value} » est impossible pour son "
                                "autorité d'affectation.",
                                "The first digit “{digit}” of the INS “{value}” is impossible for its "
                                "assigning authority."),
    "problem.ins.key": ("La clé « {key} » de l'INS « {value} » ne correspond pas à ses 13 premiers caractères "
                        "(erreur de saisie ?).",
                        "The key “{key}” of the INS “{value}” does not match its first 13 characters "
                        "(typing error?)."),
    "problem.oid.unknown": (
        "« {value} » n'est pas l'OID d'un INS (1.2.250.1.213.1.4.8 INS-NIR, .9 INS-NIA, .10 test, .11 démonstration).",
        "“{value}” is not an INS OID (1.2.250.1.213.1.4.8 INS-NIR, .9 INS-NIA, .10 test, .11 demo)."),
    "problem.gender.value": ("Sexe « {value} » inconnu (attendu : M, F ou U).",
                             "Unknown sex “{value}” (expected: M, F or U)."),
    "problem.gender.ins": ("Le sexe « {value} » ne correspond pas au premier chiffre de l'INS ({digit}).",
                           "The sex “{value}” does not match the first digit of the INS ({digit})."),
    "problem.birthdate.format": ("Date de naissance « {value} » invalide (attendu AAAA-MM-JJ).",
                                 "Invalid birth date “{value}” (expected YYYY-MM-DD)."),
    "problem.birthdate.range": ("Date de naissance « {value} » impossible (dans le futur ou avant 1850).",
                                "Impossible birth date “{value}” (in the future or before 1850)."),
    "problem.birthdate.ins_year": ("L'année de naissance ({value}) ne correspond pas à celle de l'INS ({yy}).",
                                   "The birth year ({value}) does not match the INS's ({yy})."),
    "problem.birthdate.ins_month": ("Le mois de naissance ({value}) ne correspond pas à celui de l'INS ({mm}).",
                                    "The birth month ({value}) does not match the INS's ({mm})."),
    "problem.district.format": (
        "Lieu de naissance « {value} » : code INSEE de 5 caractères attendu (2A/2B pour la Corse, 99xxx à l'étranger).",
        "Birth place “{value}”: a 5-character INSEE code is expected (2A/2B for Corsica, 99xxx abroad)."),
    "problem.name.chars": ("« {value} » contient des caractères qu'un nom ne peut pas contenir : {chars}",
                           "“{value}” contains characters a name cannot contain: {chars}"),
    "problem.local.chars": ("« {value} » contient des caractères non admis (séparateurs HL7, caractères de contrôle).",
                            "“{value}” contains characters that are not allowed (HL7 separators, control characters)."),
    "problem.consent.value": ("Valeur « {value} » incomprise (attendu : true ou false).",
                              "Value “{value}” not understood (expected: true or false)."),
    "problem.situation.unknown": ("Situation « {value} » inconnue (URGENCE pour un accès en urgence).",
                                  "Unknown situation “{value}” (URGENCE for emergency access)."),
    # -- form fields ------------------------------------------------------------------------------
    "field.Patient.identifier.value": ("Matricule INS", "INS number"),
    "field.Patient.identifier.system": ("Autorité d'affectation de l'INS (OID)", "INS assigning authority (OID)"),
    "field.Patient.name.family": ("Nom de naissance", "Birth name"),
    "field.Patient.name.given": ("Premier prénom de naissance", "First given name at birth"),
    "field.Patient.gender": ("Sexe", "Sex"),
    "field.Patient.birthDate": ("Date de naissance", "Birth date"),
    "field.Address.district": ("Lieu de naissance (code INSEE)", "Birth place (INSEE code)"),
    "field.InformationEtConsentement": ("Information et consentement du patient", "Patient information and consent"),
    "field.PatientID": ("Identifiant local du patient (IPP)", "Local patient identifier"),
    "field.PatientIDIssuer": ("Domaine de l'identifiant local", "Issuer of the local identifier"),
    "field.Situation": ("Situation (urgence)", "Situation (emergency)"),
    # -- patient page -----------------------------------------------------------------------------
    "patient.title": ("Imagerie du patient", "Patient imaging"),
    "traits.heading": ("Identité (traits stricts INS)", "Identity (strict INS traits)"),
    "traits.birth_name": ("Nom de naissance", "Birth name"),
    "traits.first_given": ("Premier prénom de naissance", "First given name at birth"),
    "traits.birth_date": ("Date de naissance", "Birth date"),
    "traits.sex": ("Sexe", "Sex"),
    "traits.birth_place": ("Lieu de naissance (code INSEE)", "Birth place (INSEE code)"),
    "traits.ins": ("Matricule INS", "INS number"),
    "traits.oid": ("Autorité d'affectation (OID)", "Assigning authority (OID)"),
    "sex.M": ("Masculin", "Male"),
    "sex.F": ("Féminin", "Female"),
    "sex.U": ("Indéterminé", "Unknown"),
    "oid.1.2.250.1.213.1.4.8": ("INS-NIR", "INS-NIR"),
    "oid.1.2.250.1.213.1.4.9": ("INS-NIA", "INS-NIA"),
    "oid.1.2.250.1.213.1.4.10": ("INS-NIR de test", "INS-NIR test"),
    "oid.1.2.250.1.213.1.4.11": ("INS-NIR de démonstration", "INS-NIR demo"),
    "emergency.banner": ("Accès en situation d'urgence (bris de glace) : cet accès est tracé et signalé.",
                         "Emergency access (break the glass): this access is audited and reported."),
    "exams.heading": ("Examens d'imagerie", "Imaging exams"),
    "exams.count": ("{count} examen(s), du plus récent au plus ancien", "{count} exam(s), newest first"),
    "exams.none": ("Aucun examen d'imagerie publié pour ce patient.", "No imaging exam published for this patient."),
    "exams.hidden": ("{count} document(s) masqué(s) aux professionnels de santé : non affiché(s).",
                     "{count} document(s) hidden from health professionals: not shown."),
    "exams.problems": ("Documents inutilisables :", "Documents that could not be used:"),
    "exam.date": ("Date", "Date"),
    "exam.modality": ("Modalité", "Modality"),
    "exam.description": ("Description", "Description"),
    "exam.body_part": ("Région anatomique", "Body part"),
    "exam.source": ("Site source", "Source site"),
    "exam.series": ("Séries", "Series"),
    "exam.instances": ("Images", "Instances"),
    "exam.accession": ("N° d'examen", "Accession number"),
    "exam.report": ("Compte rendu", "Report"),
    "exam.no_report": ("Pas de compte rendu publié", "No report published"),
    "exam.key_images": ("Images clés ({count})", "Key images ({count})"),
    "exam.actions": ("Actions", "Actions"),
    "exam.view": ("Visualiser", "View"),
    "exam.import": ("Importer dans le PACS", "Import into the PACS"),
    "exam.xdm": ("Export XDM", "XDM export"),
    "exam.latest": ("Le plus récent", "Latest"),
    "exam.prior": ("Antérieur", "Prior"),
    "exam.unknown_date": ("date inconnue", "unknown date"),
    "exam.label": ("Examen du {date}", "Exam of {date}"),
    # -- report -----------------------------------------------------------------------------------
    "report.title": ("Compte rendu", "Report"),
    "report.unreadable": ("Ce compte rendu ne peut pas être affiché : le document CDA est illisible.",
                          "This report cannot be shown: the CDA document is unreadable."),
    "report.empty": ("Ce compte rendu ne contient pas de texte lisible.", "This report contains no readable text."),
    "report.attachment": ("Le compte rendu est un document joint : le télécharger.",
                          "The report is an attached document: download it."),
    # -- import -----------------------------------------------------------------------------------
    "import.title": ("Import dans le PACS", "Import into the PACS"),
    "import.state": ("État : {state}", "State: {state}"),
    "import.state.queued": ("en attente", "queued"),
    "import.state.retrieving": ("récupération depuis le site source", "retrieving from the source site"),
    "import.state.importing": ("import dans le PACS local", "importing into the local PACS"),
    "import.state.done": ("terminé", "done"),
    "import.state.incomplete": ("incomplet", "incomplete"),
    "import.state.failed": ("échec", "failed"),
    "import.received": ("Images reçues : {received} sur {expected}", "Instances received: {received} of {expected}"),
    "import.imported": ("Images importées : {imported}, confirmées par le PACS : {committed}",
                        "Instances imported: {imported}, confirmed by the PACS: {committed}"),
    "import.volume": ("Volume reçu : {mb} Mo", "Volume received: {mb} MB"),
    "import.refresh": ("Cette page se met à jour toutes les 2 secondes.", "This page refreshes every 2 seconds."),
    "import.problems": ("Problèmes :", "Problems:"),
    # -- errors -----------------------------------------------------------------------------------
    "error.title": ("Erreur {status}", "Error {status}"),
    "error.registry.title": ("Registre injoignable", "Registry unreachable"),
    "error.registry.body": (
        "Le registre national ne répond pas : la liste des examens ne peut pas être affichée pour l'instant. "
        "Réessayez dans quelques instants.",
        "The national registry does not answer: the exam list cannot be shown for now. Try again in a moment."),
    "error.registry_refused.title": ("Le registre a refusé la requête", "The registry refused the request"),
    "error.source.title": ("Site source injoignable", "Source site unreachable"),
    "error.source.body": ("Le site qui a publié cet examen ne répond pas. Réessayez plus tard.",
                          "The site that published this exam does not answer. Try again later."),
    "error.network.title": ("Échange refusé par un autre nœud", "Exchange refused by another node"),
    "error.failed.title": ("Opération impossible", "Operation failed"),
    "error.not_found.title": ("Introuvable", "Not found"),
    "error.call_expired": ("Cet appel contextuel est inconnu ou a expiré. Relancez-le depuis votre logiciel.",
                           "This contextual call is unknown or has expired. Call again from your software."),
    "error.exam_not_found": ("Cet examen ne figure pas (ou plus) dans le dossier d'imagerie du patient.",
                             "This exam is not (or no longer) in the patient's imaging record."),
    "error.dmp_link": ("Cet examen n'est pas publié par ce site, ou sa publication a été retirée.",
                       "This exam is not published by this site, or its publication was withdrawn."),
    "error.job_not_found": ("Cet import est inconnu (ou ancien, ou lancé par un autre utilisateur).",
                            "This import is unknown (or old, or started by another user)."),
    "error.xdm_unavailable": ("L'export XDM n'est pas disponible sur ce nœud.",
                              "XDM export is not available on this node."),
    "error.xdm_not_retrieved": ("Cet examen n'est pas encore sur ce nœud : importez-le d'abord, puis exportez-le.",
                                "This exam is not on this node yet: import it first, then export it."),
    "error.no_report": ("Aucun compte rendu n'a été publié avec cet examen.",
                        "No report was published with this exam."),
}

_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Translator:
    """The catalogue in one language, and how that language writes dates."""

    language: Language
    zone: str = "Europe/Paris"

    def __call__(self, key: str, /, **params: object) -> str:
        """The message ``key``; an unknown key raises ``KeyError`` (caught by the page tests)."""
        text = CATALOGUE[key][LANGUAGES.index(self.language)]
        return text.format(**params) if params else text

    def problem(self, problem: Problem) -> str:
        return self(f"problem.{problem.code}", **problem.params)

    def field(self, name: str) -> str:
        key = f"field.{name}"
        return self(key) if key in CATALOGUE else name

    def date(self, value: date | None) -> str:
        if value is None:
            return self("exam.unknown_date")
        return value.strftime("%d/%m/%Y") if self.language == "fr" else value.isoformat()

    def datetime(self, value: datetime | None) -> str:
        """In the site's zone: the radiologist reads the time on their wall clock."""
        if value is None:
            return self("exam.unknown_date")
        local = value.astimezone(ZoneInfo(self.zone)) if value.tzinfo is not None else value
        return local.strftime("%d/%m/%Y %H:%M" if self.language == "fr" else "%Y-%m-%d %H:%M")


def translator(language: str, zone: str = "Europe/Paris") -> Translator:
    return Translator(language if language in LANGUAGES else "fr", zone)


def _accept_language(header: str) -> Language | None:
    """The supported language the browser prefers most (RFC 9110 q-values; ``fr-FR`` counts as ``fr``)."""
    best: tuple[float, int, Language] | None = None
    for position, item in enumerate(header.split(",")):
        parts = [p.strip() for p in item.split(";")]
        tag = parts[0].lower().split("-")[0]
        q = 1.0
        for param in parts[1:]:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if tag in LANGUAGES and q > 0 and (best is None or (q, -position) > (best[0], best[1])):
            best = (q, -position, tag)
    return best[2] if best else None


def choose_language(query: str | None, cookie: str | None, session: str | None, accept: str | None,
                    default: str) -> tuple[Language, bool]:
    """The request's language, and whether it was just chosen (``?lang=``: remember it)."""
    if query in LANGUAGES:
        return query, True
    for stored in (session, cookie):
        if stored in LANGUAGES:
            return stored, False
    negotiated = _accept_language(accept) if accept else None
    if negotiated is not None:
        return negotiated, False
    return (default if default in LANGUAGES else "fr"), False


def placeholders(key: str) -> set[str]:
    """Parameter names of a message (both translations must use the same ones)."""
    fr, en = CATALOGUE[key]
    return set(_FIELD.findall(fr)) | set(_FIELD.findall(en))
