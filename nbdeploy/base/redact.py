"""Keep secrets on the machine: the scrubber every record passes on its way to disk.

It lives in :mod:`nbdeploy.serve.redact` because the serving runtime (copied into every
bundle, importing nothing else of nbdeploy) needs it too, for its request log; the rest of
nbdeploy imports it from here.
"""

from nbdeploy.serve.redact import (  # noqa: F401  (re-exported)
    KEY_SHAPES,
    MASK,
    SECRET_NAME,
    is_secret_name,
    recording,
    scrub,
    scrub_text,
    scrubbing,
    secret_values,
    strip_url_password,
)
