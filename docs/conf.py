"""Sphinx configuration of the fastnll documentation site.

Build it with the installed package (the API pages import fastnll and its docstrings; the
gallery runs examples/*.py):

    pip install ".[docs]"
    sphinx-build -W -b html docs docs/_build/html       # the site
    sphinx-build -W -b doctest docs docs/_build/doctest  # the Examples of every docstring

Nothing here needs the network: no intersphinx inventories are fetched (the references to
SciPy, NumPy and PyTorch are plain links), and the theme's assets ship with it.
"""
import doctest
import importlib.util
import os

import fastnll

project = "fastnll"
author = "the fastnll developers"
copyright = "2026, the fastnll developers"
version = release = fastnll.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.md5",
                    "auto_examples/*.py", "auto_examples/*.ipynb", "auto_examples/*.zip"]
root_doc = "index"

# The API reference: one page per public name, generated from the numpydoc docstrings.
autosummary_generate = True
autodoc_typehints = "none"            # the signatures and numpydoc Parameters say it all
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

# Markdown pages (the user guide is written in MyST Markdown, readable on GitHub as well).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# The docstrings' Examples, run by `sphinx-build -b doctest` with the flags of
# tests/test_doctests.py.
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
doctest_global_setup = "import numpy as np\nnp.set_printoptions(legacy=False)"

# Without PyTorch the site still builds: fastnll.torch's pages are rendered from a mocked
# torch (the doctest builder, which runs its examples, needs the real one).
if importlib.util.find_spec("torch") is None:
    autodoc_mock_imports = ["torch"]

# The gallery: every example in examples/ runs at build time, so one that breaks fails the
# build (make_names.py with --check: it compares the shipped data file, writes nothing).
here = os.path.dirname(os.path.abspath(__file__))
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(here, "..", "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/[^/]+\.py$",
    "ignore_pattern": r"__init__\.py",
    "reset_argv": lambda gallery_conf, script_vars: {
        "perplexity_dask.py": ["--rows", "20000"], "make_names.py": ["--check"],
    }.get(os.path.basename(script_vars["src_file"]), []),
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "plot_gallery": "True",
    "capture_repr": (),
    "min_reported_time": 1,
    "write_computation_times": False,
    "show_signature": False,
    "remove_config_comments": True,
    "image_scrapers": (),              # the examples print; they draw no figures (and
    "reset_modules": (),               # matplotlib is not needed)
}

html_theme = "pydata_sphinx_theme"
html_title = f"fastnll {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_logo = "_static/favicon.svg"
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "navigation_with_keys": False,
}
# one-page sections: no section navigation
html_sidebars = {"index": [], "benchmarks": [], "development": [], "changelog": []}
# sphinx_gallery_conf holds a function (reset_argv), which Sphinx cannot pickle into its
# environment cache: the gallery is rebuilt on every run anyway.
suppress_warnings = ["config.cache"]
