"""The jupyter_server extension behind the JupyterLab Deploy panel.

Enabled by ``jupyter-config/server-config/nbdeploy.json`` (installed into
``etc/jupyter/jupyter_server_config.d`` by the wheel). It adds REST handlers
under ``{base_url}nbdeploy/`` (see :mod:`.handlers`) and runs long operations as
subprocess jobs (see :mod:`.jobs`). It never runs code in a user's kernel.
"""

from __future__ import annotations

from typing import Any


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from nbdeploy.frontends.jupyter.handlers import setup_handlers
    from nbdeploy.frontends.jupyter.jobs import JobManager
    from nbdeploy.frontends.jupyter.paths import Root

    root = Root(serverapp.root_dir)
    jobs = JobManager(root)
    serverapp.web_app.settings["nbdeploy_jobs"] = jobs
    setup_handlers(serverapp.web_app, root, jobs)
    serverapp.log.info("nbdeploy: Deploy panel API at %snbdeploy/ (root %s)",
                       serverapp.base_url, root.path)


# jupyter_server < 2 name
load_jupyter_server_extension = _load_jupyter_server_extension
