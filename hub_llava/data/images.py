"""Images of a release: resolve a record's relative path under an image root, check it, and build the `Image` value.

Releases store paths relative to an image root (`coco/train2017/000000033471.jpg`). A row's image is either
embedded (`{"bytes": ..., "path": relative}`, what the Hub wants) or referenced (`{"bytes": None, "path": absolute}`,
cheap, for local training). A record whose image is missing or corrupt is rejected with its reason; what happens to
missing images as a whole is the caller's policy (`MISSING_POLICIES`): `"error"` (the default) raises one
`MissingImagesError` with the count and the first examples once the whole pass is over, `"skip"` leaves them in the
rejects.
"""

import io
import os

import PIL.Image

from hub_llava.data.image_structure import complete_format
from hub_llava.data.llava_format import RejectedRecord

MISSING_POLICIES = ("error", "skip")
MISSING_REASON = "missing image"
CORRUPT_REASON = "corrupt image"


class ImageRootError(FileNotFoundError):
    """The image root given by the user does not exist (raised immediately, before anything is built)."""


class MissingImage(RejectedRecord):
    """A record whose image file does not exist under the image root (`path` is the relative path)."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"{MISSING_REASON}: {path}")


class MissingImagesError(ValueError):
    """Raised after a build pass under the `"error"` policy: how many records have a missing image, and the first
    missing files. (Not an `OSError`: `datasets` would rewrap it as "Cannot find data file".)"""

    def __init__(
        self,
        image_root: str,
        count: int,
        examples: list[str],
        what: str = "",
        folders: dict[str, int] | None = None,
        note: str = "",
    ):
        self.image_root, self.count, self.examples = image_root, count, examples
        self.folders = dict(folders or {})
        shown = "\n".join(f"  {path}" for path in examples)
        # Where they are tells at once whether they are a known gap (e.g. OCR-VQA's lost images) or a wrong root.
        by_folder = sorted(self.folders.items(), key=lambda item: (-item[1], item[0]))
        where = ", ".join(f"{folder or '.'} {n:,}" for folder, n in by_folder[:5])
        where += f", ... ({len(by_folder) - 5} more folders)" if len(by_folder) > 5 else ""
        super().__init__(
            f"{what + ': ' if what else ''}{count} record(s) have a missing image under the image root {image_root}; "
            f"first missing file(s):\n{shown}\n"
            + (f"missing per folder: {where}\n" if by_folder else "")
            + (f"{note}\n" if note else "")
            + "Fetch the missing images, or pass `missing_images='skip'` (`--missing_images skip`) to write those "
            "records to the rejects instead."
        )


def check_image_root(image_root: str | os.PathLike) -> str:
    """Returns the absolute image root, or raises `ImageRootError` naming it if it is not a directory."""
    root = os.path.abspath(os.fspath(image_root))
    if not os.path.isdir(root):
        raise ImageRootError(f"image root {root} does not exist or is not a directory")
    return root


def check_missing_policy(policy: str) -> str:
    if policy not in MISSING_POLICIES:
        raise ValueError(f"missing_images must be one of {MISSING_POLICIES}, got {policy!r}")
    return policy


def verify_image_bytes(data: bytes) -> str:
    """Checks that `data` is a whole, decodable image; returns its format (`"JPEG"`, `"PNG"`, ...).

    A JPEG whose marker structure proves it whole (`image_structure.complete_format`: every segment well-formed as
    libjpeg checks it and in place, up to EOI) is accepted without decoding (~0.1 ms instead of ~2 ms for a 640x480
    JPEG). Anything else is opened by PIL and `PIL.Image.verify` checks its header. That does not see truncation (a
    truncated JPEG passes it), so the image is also decoded, at reduced scale for JPEGs (`draft`), which still reads
    the whole stream.

    Raises:
        `RejectedRecord`: with the reason `corrupt image: <PIL's message>`.
    """
    image_format = complete_format(data)
    if image_format is not None:
        return image_format  # its structure proves it whole: opening or decoding it would tell nothing more
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.verify()
            image_format = image.format
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except PIL.UnidentifiedImageError:
        raise RejectedRecord(f"{CORRUPT_REASON}: not a format PIL can identify") from None
    except Exception as err:  # PIL raises many types for damaged files (OSError, SyntaxError, ValueError, ...)
        raise RejectedRecord(f"{CORRUPT_REASON}: {type(err).__name__}: {err}") from None
    return image_format


class ImageResolver:
    """Turns a release's relative image path into the `Image` feature value of a row.

    Args:
        image_root (`str`):
            The folder holding the release's image roots (`coco/`, `gqa/`, ...). Checked at once.
        embed (`bool`, *optional*, defaults to `True`):
            Embed the bytes (`{"bytes", "path": relative}`) or reference the file (`{"bytes": None, "path":
            absolute}`).
        verify (`bool`, *optional*):
            Decode every image to reject corrupt ones. Defaults to `embed` (a referenced image is only checked to
            exist, so that the referenced path stays fast).
        check_exists (`bool`, *optional*, defaults to `True`):
            Check that referenced images exist. Only benchmarks turn this off.

    A referenced image's existence is checked against a listing of its folder, read once per folder (`os.scandir`):
    one directory read instead of a `stat` per record, which matters on network filesystems and keeps the referenced
    path fast. Memory grows with the number of image files (~100 bytes each), not with the number of records.
    """

    def __init__(
        self, image_root: str, embed: bool = True, verify: bool | None = None, check_exists: bool = True
    ) -> None:
        self.root = check_image_root(image_root)
        self._prefix = self.root + os.sep
        self.embed = embed
        self.verify = embed if verify is None else verify
        self.check_exists = check_exists
        self._listings: dict[str, frozenset[str]] = {}

    def resolve(self, relative_path: str) -> str:
        """The absolute path of `relative_path` under the root; rejects paths that leave the root."""
        if ".." not in relative_path and not relative_path.startswith(os.sep):
            return self._prefix + relative_path  # the common case, without normpath (it runs per record)
        if os.path.isabs(relative_path):
            raise RejectedRecord(f"image path is absolute, expected one relative to the image root: {relative_path}")
        path = os.path.normpath(os.path.join(self.root, relative_path))
        if not path.startswith(self.root + os.sep):
            raise RejectedRecord(f"image path leaves the image root: {relative_path}")
        return path

    def __call__(self, relative_path: str) -> dict:
        """Returns the `Image` value for one image.

        Raises:
            `MissingImage`: the file does not exist (`missing image: <relative path>`).
            `RejectedRecord`: the path leaves the root or the file is not a whole image (`corrupt image: ...`).
        """
        path = self.resolve(relative_path)
        if not (self.embed or self.verify):
            if self.check_exists and not self._listed(path):
                raise MissingImage(relative_path)
            return {"bytes": None, "path": path}
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MissingImage(relative_path) from None
        if self.verify:
            verify_image_bytes(data)
        if self.embed:
            return {"bytes": data, "path": relative_path}
        return {"bytes": None, "path": path}

    def _listed(self, path: str) -> bool:
        folder, _, name = path.rpartition(os.sep)  # os.path.split costs ~1 us per record more
        listing = self._listings.get(folder)
        if listing is None:
            try:
                with os.scandir(folder) as entries:
                    listing = frozenset(entry.name for entry in entries if entry.is_file())
            except (FileNotFoundError, NotADirectoryError):
                listing = frozenset()
            self._listings[folder] = listing
        return name in listing
