"""Templates encrypted at rest: the gallery key and the authenticated cipher that seals face data in the database.

Optional and off by default. With a key, a gallery stores every embedding vector, enrolment thumbnail and
check-in thumbnail sealed with AES-256-GCM (``cryptography``'s ``AESGCM``): a random 12-byte nonce, then the
ciphertext and its 16-byte tag. Each blob is sealed with *associated data* naming what it is and where it
belongs (an embedding's subject, model and dimension; a thumbnail's row), so a blob copied into another row or
column, or altered in any bit, fails to open instead of matching somebody else.

The key is 32 random bytes, written as (URL-safe) base64 text, from (first found):

1. an explicit ``key=`` (the text, the 32 raw bytes or a :class:`Sealer`) or ``key_file=`` argument;
2. ``$OCCLUFACE_GALLERY_KEY`` (the text itself);
3. ``$OCCLUFACE_GALLERY_KEY_FILE`` (a file holding the text; refused when group or others may read it).

``occluface gallery-key new --out FILE`` writes a new key file, owner-only. A wrong or missing key is a clear
:class:`~occluface.errors.GalleryError` when the gallery opens (it holds a key check value), and any blob that
does not open under the key is one too: never bytes decoded as a face template.

Random nonces are safe for up to about 2**32 seals under one key: far more writes than a gallery makes.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Union

from occluface.errors import GalleryError

#: Environment variables holding the key text, or naming a file that holds it.
KEY_ENV = "OCCLUFACE_GALLERY_KEY"
KEY_FILE_ENV = "OCCLUFACE_GALLERY_KEY_FILE"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: How much longer a sealed blob is than what it seals (the nonce and the tag).
OVERHEAD = NONCE_BYTES + TAG_BYTES
#: What the key check value of a sealed gallery seals: opening it proves the key is the gallery's.
_KEY_CHECK = b"occluface gallery key check v1"
_KEY_CHECK_AAD = b"key-check"


class Sealer:
    """AES-256-GCM under one gallery key. ``source`` names where the key came from, for messages (never the key)."""

    def __init__(self, key: bytes, *, source: str = "the gallery key"):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            got = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
            raise GalleryError(f"{source}: a gallery key is {KEY_BYTES} bytes, got {got}")
        self._aead = AESGCM(bytes(key))
        self.source = source

    @classmethod
    def from_text(cls, text: str, *, source: str) -> Sealer:
        """The key from its base64 (standard or URL-safe) text, as ``occluface gallery-key new`` writes it."""
        return cls(decode_key(text, source=source), source=source)

    def seal(self, plain: bytes, aad: bytes) -> bytes:
        """``nonce + ciphertext + tag`` of ``plain``, bound to ``aad`` (which must be given again to open it)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, bytes(plain), aad)

    def open(self, blob: bytes, aad: bytes, *, what: str = "a sealed blob", where: str = "gallery") -> bytes:
        """The plain bytes of a sealed ``blob``; :class:`GalleryError` if the key, the ``aad`` or a bit is wrong."""
        from cryptography.exceptions import InvalidTag

        blob = bytes(blob)
        if len(blob) < OVERHEAD:
            raise GalleryError(f"{where}: {what} is {len(blob)} bytes, too short to be sealed; the gallery is damaged")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise GalleryError(
                f"{where}: cannot decrypt {what} with {self.source}: wrong gallery key? (or the stored bytes were "
                "altered or moved to another row)"
            ) from None

    def check_value(self) -> str:
        """A new key check value (text) to store in a gallery sealed under this key."""
        return base64.b64encode(self.seal(_KEY_CHECK, _KEY_CHECK_AAD)).decode("ascii")

    def verify(self, check_value: str, *, where: str = "gallery") -> None:
        """Does this key open the gallery whose key check value this is? :class:`GalleryError` if not."""
        try:
            blob = base64.b64decode(check_value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise GalleryError(f"{where}: the gallery's key check value is damaged") from None
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _KEY_CHECK_AAD)
        except (InvalidTag, ValueError):
            plain = None
        if plain != _KEY_CHECK:
            raise GalleryError(
                f"{where}: the gallery is sealed with another key; {self.source} does not open it "
                "(wrong gallery key?)"
            )

    def __repr__(self) -> str:  # never the key
        return f"Sealer(source={self.source!r})"


#: What a ``key=`` argument may be: the key text, its 32 raw bytes, a ready :class:`Sealer`; ``False``: open
#: without a key even when the environment names one; ``None``: look in the environment.
KeyArg = Union[str, bytes, Sealer, bool, None]


def decode_key(text: str, *, source: str) -> bytes:
    """The 32 key bytes of base64 text (standard or URL-safe alphabet, padding optional, spaces ignored)."""
    clean = "".join(str(text).split()).translate(str.maketrans("-_", "+/"))
    hint = f"expected the base64 text of {KEY_BYTES} random bytes, as `occluface gallery-key new --out FILE` writes"
    try:
        key = base64.b64decode(clean + "=" * (-len(clean) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise GalleryError(f"{source}: not a gallery key ({hint})") from None
    if len(key) != KEY_BYTES:
        raise GalleryError(f"{source}: not a gallery key: it decodes to {len(key)} bytes ({hint})")
    return key


def read_key_file(path: str | Path) -> Sealer:
    """The key held in ``path``; refused (naming the file) when missing, not a file, or readable by others."""
    path = Path(path).expanduser()
    source = f"gallery key file {path}"
    try:
        st = path.stat()
    except OSError as exc:
        raise GalleryError(f"{source}: cannot read it ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise GalleryError(f"{source}: not a regular file")
    if os.name == "posix" and st.st_mode & 0o077:
        raise GalleryError(
            f"{source}: may be read by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"make it owner-only: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryError(f"{source}: cannot read it ({exc})") from exc
    return Sealer.from_text(text, source=source)


def load_sealer(key: KeyArg = None, key_file: str | Path | None = None, *,
                environ: Mapping[str, str] | None = None) -> Sealer | None:
    """The gallery key to use, or ``None`` (a plain gallery). Explicit arguments win over the environment;
    ``key=False`` means no key at all, whatever the environment says."""
    if key is not None and key is not False and key_file is not None:
        raise GalleryError("give the gallery key or its file, not both")
    if key is False:
        return None
    if key is True:
        raise GalleryError("key=True is not a gallery key; give its text, its bytes or a key file")
    if isinstance(key, Sealer):
        return key
    if isinstance(key, (bytes, bytearray)):
        return Sealer(bytes(key), source="the gallery key given")
    if isinstance(key, str):
        return Sealer.from_text(key, source="the gallery key given")
    if key_file is not None:
        return read_key_file(key_file)
    env = os.environ if environ is None else environ
    text, file = env.get(KEY_ENV) or None, env.get(KEY_FILE_ENV) or None
    if text and file:
        raise GalleryError(f"both ${KEY_ENV} and ${KEY_FILE_ENV} are set; set only one")
    if text:
        return Sealer.from_text(text, source=f"${KEY_ENV}")
    if file:
        return read_key_file(file)
    return None


def new_key_text() -> str:
    """A new random gallery key as URL-safe base64 text."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def write_key_file(path: str | Path) -> Path:
    """Write a new key to ``path``, owner-only (0600); refuses to overwrite a file (its gallery would be lost)."""
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise GalleryError(f"{path}: exists already; a gallery sealed with that key could not be opened without it, "
                           "so it is not overwritten") from None
    except OSError as exc:
        raise GalleryError(f"{path}: cannot create the key file ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(new_key_text() + "\n")
    os.chmod(path, 0o600)
    return path


__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "OVERHEAD",
    "KeyArg",
    "Sealer",
    "decode_key",
    "load_sealer",
    "new_key_text",
    "read_key_file",
    "write_key_file",
]
