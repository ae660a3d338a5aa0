"""The public docstrings: their Examples run as doctests, and each has the numpydoc sections."""
# The doctests run on the imported fastnll package (the built extension), as CI sees it, with
# NORMALIZE_WHITESPACE | ELLIPSIS.  Every docstring imports what it uses, so the examples run
# in an empty namespace, as they would when pasted into a session.
#
# Exemptions from the section check:
# - get_num_threads takes no argument and raises nothing: no Parameters or Raises.
import ast
import builtins
import doctest
import importlib
import importlib.util
import inspect
import io
import re
import sys

import numpy as np
import pytest

import fastnll

MODULES = ["fastnll._softmax", "fastnll._class_losses", "fastnll._elementwise",
           "fastnll._entropy", "fastnll._threads", "fastnll._config", "fastnll.torch"]
OPTIONFLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS

PUBLIC = [name for name in fastnll.__all__ if callable(getattr(fastnll, name))]
NO_ARGUMENTS = {"get_num_threads"}      # may leave out Parameters and Raises
NO_SEE_ALSO = set()

REQUIRED = ["Parameters", "Returns", "Raises", "See Also", "Examples"]
# numpydoc's sections, in numpydoc's order
NUMPYDOC_ORDER = ["Parameters", "Returns", "Yields", "Receives", "Other Parameters", "Raises",
                  "Warns", "Warnings", "See Also", "Notes", "References", "Examples"]
MIRRORED_PACKAGES = ("scipy", "torch", "numpy", "threadpoolctl")

needs_docstrings = pytest.mark.skipif(sys.flags.optimize >= 2,
                                      reason="python -OO strips docstrings")


def _module(name):
    if name == "fastnll.torch":
        pytest.importorskip("torch")
        if importlib.util.find_spec("fastnll.torch") is None:
            pytest.skip("fastnll.torch does not exist")
    return importlib.import_module(name)


def _find(module):
    """The doctests of `module`, including every public fastnll function it defines (also
    any that DocTestFinder's own search would miss, such as decorated functions on some
    Python versions)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(module, module.__name__, globs={})
    found = {t.name for t in tests}
    for name in PUBLIC:
        obj = getattr(fastnll, name)
        qualified = f"{module.__name__}.{name}"
        if obj.__module__ == module.__name__ and qualified not in found:
            tests += finder.find(obj, qualified, module=module, globs={})
    return tests


@needs_docstrings
@pytest.mark.parametrize("modname", MODULES)
def test_doctests(modname):
    module = _module(modname)
    tests = _find(module)
    with_examples = {t.name.rsplit(".", 1)[-1] for t in tests if t.examples}
    defined_here = {n for n in PUBLIC if getattr(fastnll, n).__module__ == modname}
    assert defined_here <= with_examples, f"no examples found for {defined_here - with_examples}"

    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS, verbose=False)
    report = io.StringIO()
    failed = 0
    setting = fastnll._threads._setting        # the set_num_threads example changes it
    try:
        # NumPy's default print options, whatever an earlier test or a user set
        with np.printoptions(precision=8, threshold=1000, edgeitems=3, linewidth=75,
                             suppress=False, nanstr="nan", infstr="inf", sign="-",
                             floatmode="maxprec", formatter=None, legacy=False):
            for test in sorted(tests, key=lambda t: t.name):
                failed += runner.run(test, out=report.write).failed
    finally:
        fastnll._threads._setting = setting
    assert failed == 0, f"{failed} failing example(s) in {modname}:\n{report.getvalue()}"


# --------------------------------------------------------------------- the sections ----

def _sections(doc):
    """{title: body} of a numpydoc docstring (inspect.cleandoc'ed), in order."""
    lines = doc.splitlines()
    heads = [i for i in range(len(lines) - 1)
             if lines[i].strip() and not lines[i].startswith(" ")
             and re.fullmatch(r"-{3,}", lines[i + 1]) and len(lines[i + 1]) == len(lines[i])]
    sections = {}
    for k, i in enumerate(heads):
        end = heads[k + 1] if k + 1 < len(heads) else len(lines)
        assert lines[i] not in sections, f"section {lines[i]!r} twice"
        sections[lines[i]] = lines[i + 2:end]
    return sections


def _entries(body):
    """The unindented lines of a section: 'name : type' entries."""
    return [line for line in body if line.strip() and not line.startswith(" ")]


def _resolve(dotted):
    """The object a See Also entry names, or None when its package is not installed."""
    parts = dotted.split(".")
    needs = "torch" if parts[:2] == ["fastnll", "torch"] else parts[0]
    if importlib.util.find_spec(needs) is None:
        return None
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@needs_docstrings
@pytest.mark.parametrize("name", PUBLIC)
def test_numpydoc_sections(name):
    func = getattr(fastnll, name)
    doc = inspect.cleandoc(func.__doc__ or "")
    lines = doc.splitlines()
    assert lines and lines[0].strip(), "no summary line"
    assert len(lines) == 1 or not lines[1].strip(), "the summary must be one line"

    sections = _sections(doc)
    unknown = [s for s in sections if s not in NUMPYDOC_ORDER]
    assert not unknown, f"not numpydoc sections: {unknown}"
    order = [s for s in NUMPYDOC_ORDER if s in sections]
    assert list(sections) == order, f"sections out of numpydoc's order: {list(sections)}"
    required = [s for s in REQUIRED
                if not (name in NO_ARGUMENTS and s in ("Parameters", "Raises"))
                and not (name in NO_SEE_ALSO and s == "See Also")]
    missing = [s for s in required if s not in sections]
    assert not missing, f"missing sections: {missing}"
    assert any(line.lstrip().startswith(">>> ") for line in sections["Examples"])

    # Parameters: every parameter of the real signature, in order, with its default
    params = inspect.signature(func).parameters
    if params or "Parameters" in sections:
        documented = []
        for entry in _entries(sections["Parameters"]):
            names, _, kind = entry.partition(" : ")
            for pname in names.split(", "):
                documented.append(pname.strip())
                p = params.get(pname.strip())
                if p is None:
                    continue
                if p.default is inspect.Parameter.empty:
                    assert "optional" not in kind and "default" not in kind, entry
                    continue
                m = re.search(r"\bdefault\s+(.+)$", kind)
                if m:
                    assert ast.literal_eval(m.group(1)) == p.default, (entry, p.default)
                else:
                    assert "optional" in kind, f"{entry!r}: say the default {p.default!r}"
        assert documented == list(params), f"documented {documented}, signature {list(params)}"

    # Returns: at least one value; Raises: builtin exception types
    if "Returns" in sections:
        assert _entries(sections["Returns"]), "empty Returns"
    if "Raises" in sections:
        raised = _entries(sections["Raises"])
        assert raised, "empty Raises"
        for exc in raised:
            assert issubclass(getattr(builtins, exc.strip(), type(None)), BaseException), exc

    # See Also: the SciPy/PyTorch function mirrored, and names that exist
    if "See Also" in sections:
        refs = [r.strip() for entry in _entries(sections["See Also"])
                for r in entry.partition(" : ")[0].split(",")]
        assert any(r.split(".")[0] in MIRRORED_PACKAGES for r in refs), refs
        for ref in refs:
            if "." not in ref:
                assert ref in fastnll.__all__, f"See Also {ref!r}: not a fastnll function"
            else:
                _resolve(ref)           # raises AttributeError / ImportError if misnamed
