"""nbdeploy's version: the one place it is written.

It lives in the serving runtime because that package is copied into every bundle and
must stay self-contained; ``nbdeploy._version``, the wheel's metadata (hatch reads
this file) and the API's server metadata all take it from here. A test holds the
JupyterLab extension's package.json to it.
"""

__version__ = "0.1.0"
