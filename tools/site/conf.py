"""Sphinx configuration for the course's website (used by tools/site/build.py with -c tools/site).

The source folder is build/site-src/, a rewritten copy of the course; see
tools/site/rewrite.py for what the copy changes and why.
"""
import os

project = "minildr"
html_title = "minildr: how programs load code at run time"
extensions = ["myst_nb"]
# The committed outputs are the real outputs (nbval checks them): never re-run.
nb_execution_mode = "off"
# colon fences and definition lists (a glossary written as "term\n: meaning").
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3          # [text](#a-heading) and [text](other.md#a-heading) resolve
exclude_patterns = ["**/.ipynb_checkpoints"]

_repository = os.environ.get("MINILDR_SITE_REPOSITORY", "OWNER/minildr")
html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": f"https://github.com/{_repository}",
    "repository_branch": os.environ.get("MINILDR_SITE_BRANCH", "HEAD"),
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {"binderhub_url": "https://mybinder.org", "notebook_interface": "jupyterlab"},
    "show_toc_level": 2,
}
# The theme logs a console error on a first visit unless a mode is set.
html_context = {"default_mode": "light"}
# A favicon of our own: otherwise every browser asks for /favicon.ico (a 404).
html_favicon = "_static/favicon.svg"
html_static_path = []
html_last_updated_fmt = None
# Go and C written with %%writefile / %%minildr are highlighted as IPython and
# fail to lex; the code still shows, plain.
# A heading that skips a level (# then ###) is cosmetic too. Every other
# warning (a broken link or anchor, a missing image) fails the build.
suppress_warnings = ["misc.highlighting_failure", "myst.header"]
