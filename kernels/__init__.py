"""Triton kernels (installed as chatvec_fast.kernels).

Imported only by the triton backend, never by `import chatvec_fast`.
"""
