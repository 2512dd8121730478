"""The compiled HTTP/1.1 core (Cython over llhttp); everything else is in pyproject.toml.

`pip install .` / `pip install -e .` builds it from `third_party/llhttp` (llhttp's generated C,
vendored: see third_party/llhttp/README.md) and `src/meshway/proxy/_core/*.pyx`.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

LLHTTP = "third_party/llhttp"

extensions = [
    Extension(
        "meshway.proxy._core._h1parse",
        ["src/meshway/proxy/_core/_h1parse.pyx",
         f"{LLHTTP}/src/llhttp.c", f"{LLHTTP}/src/api.c", f"{LLHTTP}/src/http.c"],
        include_dirs=[f"{LLHTTP}/include"],
        extra_compile_args=["-O2"],
    ),
    Extension("meshway.proxy._core._fmt", ["src/meshway/proxy/_core/_fmt.pyx"], extra_compile_args=["-O2"]),
    # OpenSSL on the socket for TLS listeners (libssl-dev: the same libssl Python's `ssl` uses)
    Extension("meshway.proxy._core._tlssock", ["src/meshway/proxy/_core/_tlssock.pyx"],
              libraries=["ssl", "crypto"], extra_compile_args=["-O2"]),
    Extension("meshway.proxy._core._h2codec", ["src/meshway/proxy/_core/_h2codec.pyx"], extra_compile_args=["-O2"]),
    Extension("meshway.proxy._core._counters", ["src/meshway/proxy/_core/_counters.pyx"], extra_compile_args=["-O2"]),
    Extension("meshway.proxy._core._plugctx", ["src/meshway/proxy/_core/_plugctx.pyx"], extra_compile_args=["-O2"]),
    # glibc's malloc_trim for the worker's memory release (proxy/_memory.py), so that no worker loads ctypes
    Extension("meshway.proxy._core._heap", ["src/meshway/proxy/_core/_heap.pyx"], extra_compile_args=["-O2"]),
]

setup(ext_modules=cythonize(extensions, language_level=3, compiler_directives={"embedsignature": False}))
