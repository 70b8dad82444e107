"""Windows DPAPI through ctypes: the device token encrypted for this Windows user
(CryptProtectData / CryptUnprotectData in crypt32, the result freed with LocalFree).

Written against the documented Win32 signatures and unit-tested with fake libraries that
check the call shapes (tests/test_dpapi.py); not tested on a real Windows machine.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

DWORD = ctypes.c_uint32
BOOL = ctypes.c_int32
CRYPTPROTECT_UI_FORBIDDEN = 0x1  # never show a prompt: the agent runs unattended
DESCRIPTION = "callvault-agent device token"
# Extra secret mixed in, so another program of the same user cannot decrypt the blob by
# passing it to CryptUnprotectData without knowing it is ours.
ENTROPY = b"callvault-agent/device-token/1"


class DATA_BLOB(ctypes.Structure):
    """wincrypt.h: a byte count and a pointer to the bytes."""

    _fields_ = [("cbData", DWORD), ("pbData", ctypes.POINTER(ctypes.c_ubyte))]


BLOB_P = ctypes.POINTER(DATA_BLOB)


class DpapiError(OSError):
    """CryptProtectData or CryptUnprotectData failed."""


def _declare(lib: Any, name: str, restype: Any, *argtypes: Any) -> Any:
    func = getattr(lib, name)
    func.restype = restype
    func.argtypes = list(argtypes)
    return func


def _blob(data: bytes) -> tuple[DATA_BLOB, Any]:
    """A DATA_BLOB over a copy of `data`, and the buffer that must outlive it."""
    buffer = ctypes.create_string_buffer(data, len(data))
    pointer = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ubyte))
    return DATA_BLOB(len(data), pointer), buffer


def _last_error() -> int:
    get = getattr(ctypes, "get_last_error", None)
    return int(get()) if get else 0


class Dpapi:
    """The libraries can be given (tests pass fakes); by default the system's own."""

    def __init__(self, crypt32: Any = None, kernel32: Any = None) -> None:
        if crypt32 is None or kernel32 is None:
            if sys.platform != "win32":
                raise DpapiError("DPAPI needs Windows")
            crypt32 = ctypes.WinDLL("crypt32", use_last_error=True)
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        self._protect = _declare(
            crypt32,
            "CryptProtectData",
            BOOL,
            BLOB_P,  # pDataIn
            ctypes.c_wchar_p,  # szDataDescr
            BLOB_P,  # pOptionalEntropy
            ctypes.c_void_p,  # pvReserved
            ctypes.c_void_p,  # pPromptStruct
            DWORD,  # dwFlags
            BLOB_P,  # pDataOut
        )
        self._unprotect = _declare(
            crypt32,
            "CryptUnprotectData",
            BOOL,
            BLOB_P,  # pDataIn
            ctypes.POINTER(ctypes.c_wchar_p),  # ppszDataDescr (not wanted: NULL)
            BLOB_P,  # pOptionalEntropy
            ctypes.c_void_p,  # pvReserved
            ctypes.c_void_p,  # pPromptStruct
            DWORD,  # dwFlags
            BLOB_P,  # pDataOut
        )
        self._local_free = _declare(kernel32, "LocalFree", ctypes.c_void_p, ctypes.c_void_p)

    def protect(self, data: bytes) -> bytes:
        """`data` encrypted for this Windows user (on this PC's copy of their keys)."""
        return self._call(self._protect, data, DESCRIPTION, "CryptProtectData")

    def unprotect(self, blob: bytes) -> bytes:
        return self._call(self._unprotect, blob, None, "CryptUnprotectData")

    def _call(self, function: Any, data: bytes, description: str | None, name: str) -> bytes:
        blob_in, keep_in = _blob(data)
        entropy, keep_entropy = _blob(ENTROPY)
        blob_out = DATA_BLOB()
        ok = function(
            ctypes.byref(blob_in),
            description,
            ctypes.byref(entropy),
            None,
            None,
            CRYPTPROTECT_UI_FORBIDDEN,
            ctypes.byref(blob_out),
        )
        del keep_in, keep_entropy  # the call is over: the buffers may go
        if not ok:
            raise DpapiError(f"{name} failed (Windows error {_last_error()})")
        try:
            return ctypes.string_at(blob_out.pbData, blob_out.cbData)
        finally:
            self._local_free(ctypes.cast(blob_out.pbData, ctypes.c_void_p))
