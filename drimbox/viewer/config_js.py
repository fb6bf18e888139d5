"""The ``app-config.js`` the node gives OHIF (the shipped one points at a public demo server).

The only data source is the node's own site-face ``/dicom-web``, same origin: no CORS, and the browser
sends the session cookie with every DICOMweb fetch, so the viewer sees exactly what the logged-in user
may see (local PACS studies and the remote studies that user opened). Relative roots keep the
BulkDataURI/RetrieveURL the gateway returns on the origin the browser used.

The study list is off: on a node the way into the viewer is a study page, a contextual call or a DMP
link, always for one patient — a list of every study of the PACS is not something to show. The
onboarding tour is off (it covers the viewport and means nothing to a radiologist opening an exam).
OHIF's mammography hanging protocol gets one rule fixed (see ``_HP_MAMMO_FIX``) so that a standard
R MLO is hung, and a sibling, ``@drimbox/hpMammoPrior`` (screening second reads: current over prior).
"""

from __future__ import annotations

import json
from typing import Any

from drimbox.config import NodeSettings

__all__ = ["DATA_SOURCE_NAME", "DICOMWEB_ROOT", "app_config", "app_config_js"]

DATA_SOURCE_NAME = "drimbox"
DICOMWEB_ROOT = "/dicom-web"
"""The site face's DICOMweb root (same origin as the viewer)."""


def app_config(settings: NodeSettings) -> dict[str, Any]:
    """OHIF's ``window.config`` for this node, as data (tests compare it; :func:`app_config_js` prints it)."""
    return {
        "name": f"drimbox/{settings.name}",
        "routerBasename": None,
        "extensions": [],
        "modes": [],
        # An empty tour list: OHIF then has no onboarding tour to start.
        "customizationService": [{"ohif.tours": {"$set": []}}],
        "showStudyList": False,
        "maxNumberOfWebWorkers": 4,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 10},
        "showErrorDetails": "always",
        "defaultDataSourceName": DATA_SOURCE_NAME,
        "dataSources": [{
            "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
            "sourceName": DATA_SOURCE_NAME,
            "configuration": {
                "friendlyName": f"DRIM-M node {settings.name}",
                "name": DATA_SOURCE_NAME,
                "qidoRoot": DICOMWEB_ROOT,
                "wadoRoot": DICOMWEB_ROOT,
                "wadoUriRoot": DICOMWEB_ROOT,
                "qidoSupportsIncludeField": False,
                "supportsReject": False,
                "imageRendering": "wadors",
                "thumbnailRendering": "wadors",
                "enableStudyLazyLoad": True,
                "supportsFuzzyMatching": False,
                "supportsWildcard": True,
                "staticWado": False,
                "singlepart": "bulkdata,video",
                "bulkDataURI": {"enabled": True},
                # Quote the type parameter (type="application/octet-stream"): unquoted, the slash makes
                # it no RFC 9110 token, and the node's gateway refuses such an Accept header (400).
                "omitQuotationForMultipartRequest": False,
            },
        }],
    }


_TOUR_OFF = """\
// The onboarding tour also remembers itself in localStorage: mark it shown, in case a mode brings its own.
try {
  var shown = JSON.parse(window.localStorage.getItem('shownTours') || '[]');
  if (shown.indexOf('basicViewerTour') < 0) { shown.push('basicViewerTour'); }
  window.localStorage.setItem('shownTours', JSON.stringify(shown));
} catch (e) { /* storage disabled: the tour may show, nothing else changes */ }
"""


_HP_MAMMO_FIX = """\
// OHIF 3.13.2's mammography hanging protocol @ohif/hpMammo requires of an R MLO a PatientOrientation with
// no 'P' and no 'FL' item: it rejects 'P\\FL', the standard orientation of an R MLO stored as hung (chest
// wall on the right), and leaves that viewport empty. Drop that one rule (ViewCode and SeriesDescription
// still tell the R MLO apart) when the protocol is registered or, if it already is, where it is kept.
(function () {
  var ID = '@ohif/hpMammo';
  function isBadRule(rule) {
    return rule && rule.attribute === 'PatientOrientation' && rule.required &&
      rule.constraint && rule.constraint.doesNotContain !== undefined;
  }
  function fix(protocol) {
    var selectors = protocol && protocol.displaySetSelectors;
    if (!selectors) { return; }
    ['RMLO', 'RMLOPrior'].forEach(function (name) {
      var rules = selectors[name] && selectors[name].seriesMatchingRules;
      if (!rules) { return; }
      for (var i = rules.length - 1; i >= 0; i--) { if (isBadRule(rules[i])) { rules.splice(i, 1); } }
    });
  }
  // Screening second reads (drimbox.screening): @drimbox/hpMammoPrior hangs the four views of the current
  // exam (first study of the URL) above the same four views of the prior (second study), with hpMammo's own
  // view selectors and display areas (right views against the right edge, left views against the left).
  var PRIOR_ID = '@drimbox/hpMammoPrior';
  var VIEWS = ['RCC', 'LCC', 'RMLO', 'LMLO'];
  function area(view) {
    var right = view.charAt(0) === 'R';
    return { storeAsInitialCamera: true, imageArea: [0.8, 0.8],
             imageCanvasPoint: { imagePoint: [right ? 1 : 0, 0.5], canvasPoint: [right ? 1 : 0, 0.5] } };
  }
  function viewport(view, suffix) {
    return { viewportOptions: { toolGroupId: 'default', allowUnmatchedView: true, displayArea: area(view) },
             displaySets: [{ id: view + suffix }] };
  }
  function priorProtocol(mammo) {
    var viewports = VIEWS.map(function (v) { return viewport(v, ''); })
      .concat(VIEWS.map(function (v) { return viewport(v, 'Prior'); }));
    return {
      id: PRIOR_ID, name: 'Mammography, current over prior (drimbox)', toolGroupIds: ['default'],
      protocolMatchingRules: [{ id: 'Mammography', weight: 150, attribute: 'ModalitiesInStudy',
                                constraint: { contains: 'MG' }, required: true }],
      displaySetSelectors: mammo.displaySetSelectors, numberOfPriorsReferenced: 1,
      stages: [{ name: 'current over prior',
                 viewportStructure: { type: 'grid', layoutType: 'grid', properties: { rows: 2, columns: 4 } },
                 viewports: viewports }],
    };
  }
  function patch(hps) {
    if (!hps || hps.__drimboxMammoFix) { return; }
    hps.__drimboxMammoFix = true;
    var add = hps.addProtocol;
    hps.addProtocol = function (id, protocol) {
      if (id === ID && typeof protocol !== 'function') { fix(protocol); }
      var result = add.apply(this, arguments);
      if (id === ID && this.protocols) {
        var mammo = this.protocols.get(ID);
        fix(mammo);
        if (mammo && mammo.displaySetSelectors) { add.call(this, PRIOR_ID, priorProtocol(mammo)); }
      }
      return result;
    };
    if (hps.protocols) {
      var known = hps.protocols.get(ID);
      fix(known);
      if (known && known.displaySetSelectors) { add.call(hps, PRIOR_ID, priorProtocol(known)); }
    }
  }
  var services;
  try {
    Object.defineProperty(window, 'services', {
      configurable: true, enumerable: true,
      get: function () { return services; },
      set: function (value) { services = value; try { patch(value && value.hangingProtocolService); } catch (e) {} },
    });
  } catch (e) { /* window.services already defined: leave OHIF as it is */ }
})();
"""


def app_config_js(settings: NodeSettings) -> str:
    """The JavaScript OHIF loads before starting (``/app-config.js``)."""
    body = json.dumps(app_config(settings), indent=2, ensure_ascii=True)
    header = f"// Generated by the DRIM-M node {json.dumps(settings.name)}; do not edit.\n"
    return f"{header}window.config = {body};\n{_TOUR_OFF}{_HP_MAMMO_FIX}"
