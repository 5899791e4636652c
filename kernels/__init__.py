"""Triton kernels (installed as chatvec_fast.kernels).

Imported only by the triton backend, never by `import chatvec_fast`.
"""

if __name__ == "kernels":
    # This folder was found as the top-level package `kernels`: the checkout's root is on sys.path
    # (`python -m pytest` or `python -m chatvec_fast` run from it). That name belongs to Hugging Face's
    # `kernels` package, which transformers >= 5.2x imports whenever it is installed; shadowing it breaks
    # `import transformers` ("cannot import name 'CUDAProperties' from 'kernels'"). Step aside: load the
    # installed one in our place (CPython keeps the module a package's __init__ leaves in sys.modules).
    # Without one installed, stay an empty module with no __version__, which transformers reads as absent.
    import importlib.machinery as _machinery
    import importlib.util as _util
    import os as _os
    import sys as _sys

    _root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    _path = [p for p in _sys.path if _os.path.abspath(p or _os.curdir) != _root]
    _spec = _machinery.PathFinder.find_spec("kernels", _path)
    if _spec is not None and _spec.loader is not None:
        _module = _util.module_from_spec(_spec)
        _sys.modules["kernels"] = _module
        _spec.loader.exec_module(_module)
