# An in-tree PEP 517 build backend for the forkd SDK, standard library only.
# pip runs it in an isolated build environment that needs nothing installed
# (`requires = []` in pyproject.toml), so `pip install ./sdk/python` works
# offline: no setuptools, wheel or flit to download. It builds a pure-Python
# wheel of the `forkd` package, an sdist, and an editable wheel (PEP 660).
"""PEP 517 / PEP 660 build backend for the forkd Python SDK."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "forkd"
TAG = "py3-none-any"
# A fixed timestamp keeps builds reproducible (zip cannot store times before 1980).
EPOCH = (1980, 1, 1, 0, 0, 0)


def _project() -> Dict[str, Any]:
    """The ``[project]`` table of pyproject.toml (tomllib when there is one, else its plain strings)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        raw = f.read()
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]  # Python 3.11+

        return dict(tomllib.loads(raw.decode("utf-8"))["project"])
    except ImportError:
        table: Dict[str, Any] = {}
        section = ""
        for line in raw.decode("utf-8").splitlines():
            header = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
            if header:
                section = header.group(1).strip()
                continue
            pair = re.match(r'^\s*([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"\s*$', line)
            if section == "project" and pair:
                table[pair.group(1)] = pair.group(2)
        return table


def _version() -> str:
    with open(os.path.join(ROOT, PACKAGE, "version.py"), encoding="utf-8") as f:
        found = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M)
    if not found:
        raise RuntimeError("forkd/version.py has no __version__")
    return found.group(1)


def _metadata() -> str:
    project = _project()
    version = _version()
    if project.get("version", version) != version:
        raise RuntimeError(f"pyproject.toml says version {project['version']}, forkd/version.py {version}")
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version}",
        f"Summary: {project.get('description', '')}",
        f"Requires-Python: {project.get('requires-python', '>=3.9')}",
    ]
    license_ = project.get("license")
    if isinstance(license_, Mapping) and "text" in license_:
        lines.append(f"License: {license_['text']}")
    readme = os.path.join(ROOT, "README.md")
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _dist_info() -> str:
    return f"{PACKAGE}-{_version()}.dist-info"


def _wheel_name() -> str:
    return f"{PACKAGE}-{_version()}-{TAG}.whl"


def _package_files() -> List[Tuple[str, str]]:
    """(path in the wheel, path on disk) for every file of the package."""
    files = []
    base = os.path.join(ROOT, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".py", ".typed")):
                full = os.path.join(dirpath, name)
                files.append((os.path.relpath(full, ROOT).replace(os.sep, "/"), full))
    return files


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"{arcname},sha256={digest},{len(data)}"


def _write_wheel(wheel_directory: str, members: List[Tuple[str, bytes]]) -> str:
    dist_info = _dist_info()
    members = members + [
        (f"{dist_info}/METADATA", _metadata().encode()),
        (
            f"{dist_info}/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: forkd_build\nRoot-Is-Purelib: true\nTag: {TAG}\n".encode(),
        ),
        (f"{dist_info}/top_level.txt", f"{PACKAGE}\n".encode()),
    ]
    record = [_record_line(name, data) for name, data in members] + [f"{dist_info}/RECORD,,"]
    members.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    path = os.path.join(wheel_directory, _wheel_name())
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return os.path.basename(path)


# ---- PEP 517 hooks ----


def get_requires_for_build_wheel(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Nothing: the backend is standard library only."""
    return []


def get_requires_for_build_sdist(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Nothing: the backend is standard library only."""
    return []


def get_requires_for_build_editable(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Nothing: the backend is standard library only."""
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Optional[Mapping[str, Any]] = None
) -> str:
    """Writes the .dist-info directory pip reads before building."""
    dist_info = os.path.join(metadata_directory, _dist_info())
    os.makedirs(dist_info, exist_ok=True)
    with open(os.path.join(dist_info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    with open(os.path.join(dist_info, "WHEEL"), "w", encoding="utf-8") as f:
        f.write(f"Wheel-Version: 1.0\nGenerator: forkd_build\nRoot-Is-Purelib: true\nTag: {TAG}\n")
    return _dist_info()


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """Builds ``forkd-<version>-py3-none-any.whl`` into ``wheel_directory``."""
    members = []
    for arcname, full in _package_files():
        with open(full, "rb") as f:
            members.append((arcname, f.read()))
    return _write_wheel(wheel_directory, members)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """Builds a wheel whose .pth file puts this source tree on sys.path (``pip install -e``)."""
    return _write_wheel(wheel_directory, [(f"_{PACKAGE}_editable.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory: str, config_settings: Optional[Mapping[str, Any]] = None) -> str:
    """Builds ``forkd-<version>.tar.gz``: the package, the backend, pyproject.toml and the README."""
    base = f"{PACKAGE}-{_version()}"
    path = os.path.join(sdist_directory, f"{base}.tar.gz")
    names = ["pyproject.toml", "README.md", "_build/forkd_build.py"] + [arc for arc, _ in _package_files()]
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        pkg_info = _metadata().encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(pkg_info))
        for name in names:
            full = os.path.join(ROOT, name)
            if os.path.exists(full):
                tar.add(full, arcname=f"{base}/{name}", recursive=False)
    return os.path.basename(path)
