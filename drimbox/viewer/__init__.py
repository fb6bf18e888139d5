"""F9: the OHIF viewer served by the node's site face, pointed at the node's own ``/dicom-web``.

- :func:`ohif_dist` — where the prebuilt ``@ohif/app`` ``dist/`` is (installed by ``scripts/setup.sh``).
- :func:`app_config_js` — the generated ``app-config.js`` (same-origin DICOMweb, no study list, no tour).
- :func:`viewer_router` / :func:`mount_viewer` — static assets (public), the login-protected HTML entry
  with SPA fallback, 404 for the node's own prefixes.
"""

from drimbox.viewer.config_js import DATA_SOURCE_NAME, DICOMWEB_ROOT, app_config, app_config_js
from drimbox.viewer.dist import OHIF_VERSION, default_ohif_dist, ohif_dist
from drimbox.viewer.serve import (
    IMMUTABLE,
    NODE_PREFIXES,
    SESSION_COOKIE,
    ViewerLogin,
    mount_viewer,
    require_session_present,
    viewer_router,
)

__all__ = [
    "DATA_SOURCE_NAME",
    "DICOMWEB_ROOT",
    "IMMUTABLE",
    "NODE_PREFIXES",
    "OHIF_VERSION",
    "SESSION_COOKIE",
    "ViewerLogin",
    "app_config",
    "app_config_js",
    "default_ohif_dist",
    "mount_viewer",
    "ohif_dist",
    "require_session_present",
    "viewer_router",
]
