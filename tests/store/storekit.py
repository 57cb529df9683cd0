"""Image-file arrays, configurations and tree comparison for the store tests."""

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import crypto
from raidd.array import create_array
from raidd.config import Config

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MAKE_CRM = SHARED / "tools" / "make-crm-dataset"


@dataclass
class Setup:
    """One array of image files with its key file, data directory and configuration file."""

    base: Path
    members: list[str]
    keyfile: Path
    data: Path
    config_path: Path

    def config(self) -> Config:
        from raidd.config import load_config

        return load_config(self.config_path)


def make_setup(
    base: Path,
    *,
    level: int = 5,
    members: int = 4,
    size: int = 24 << 20,
    strip_size: int = 16384,
    retention: str = "",
    data: Path | None = None,
    watch_name: str = "data",
) -> Setup:
    """Create an array of image files under `base` and a configuration for it."""
    base.mkdir(parents=True, exist_ok=True)
    keyfile = base / "array.key"
    crypto.write_new_keyfile(keyfile)

    def keyslot_area() -> bytes:
        master = crypto.MasterKey.generate()
        try:
            return crypto.KeyslotArea.create(
                master, keyfile_secret=crypto.read_keyfile(keyfile)
            ).to_bytes()
        finally:
            master.wipe()

    paths = [str(base / f"member{i}.img") for i in range(members)]
    create_array(paths, level=level, strip_size=strip_size, size=size, keyslot_area=keyslot_area)
    data = data or base / "data"
    data.mkdir(exist_ok=True)
    config_path = base / "raidd.toml"
    config_path.write_text(
        f"[array]\nmembers = {paths!r}\n".replace("'", '"') + f'keyfile = "{keyfile}"\n'
        "[[watch]]\n"
        f'path = "{data}"\n'
        f'name = "{watch_name}"\n'
        f"{retention}"
        "[state]\n"
        f'directory = "{base / "state"}"\n'
    )
    return Setup(base, paths, keyfile, data, config_path)


def describe_tree(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Return every entry under `root`: type, mode, size, mtime, content or link target."""
    result: dict[bytes, tuple[object, ...]] = {}
    root_bytes = os.fsencode(root)
    for directory, dirs, files in os.walk(root_bytes):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            relative = os.path.relpath(path, root_bytes)
            if stat.S_ISLNK(info.st_mode):
                result[relative] = ("link", os.readlink(path), info.st_mtime_ns)
            elif stat.S_ISDIR(info.st_mode):
                result[relative] = ("dir", stat.S_IMODE(info.st_mode), info.st_mtime_ns)
            else:
                with open(path, "rb") as handle:
                    content = handle.read()
                result[relative] = (
                    "file",
                    stat.S_IMODE(info.st_mode),
                    info.st_mtime_ns,
                    content,
                )
    return result
