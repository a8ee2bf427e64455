"""Download a public BEIR archive, check its md5, unpack it; a clear error when offline."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from rag.core.errors import ConfigError, DataError, RagError

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"

#: md5 of each public archive, from the BEIR README's dataset table.
BEIR_MD5: dict[str, str] = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "6e29ac6c57e2d227fb57501872cac45f",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "88591ef8eb2913126d0c93ecbde6285f",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}


def download_beir(
    name: str, dest: str | os.PathLike[str], url: str | None = None, timeout: float = 30.0
) -> Path:
    """Fetch ``<name>.zip``, verify its md5, unpack to ``dest/<name>`` and return that folder.

    An existing ``dest/<name>/corpus.jsonl`` is reused without network access. ``url`` overrides
    the public address (a mirror); the md5 is still checked.
    """
    if name not in BEIR_MD5:
        raise ConfigError(f"unknown BEIR dataset {name!r}; known: {', '.join(sorted(BEIR_MD5))}")
    target = Path(dest) / name
    if (target / "corpus.jsonl").exists():
        return target
    src = url if url is not None else BEIR_URL.format(name=name)
    Path(dest).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            with urllib.request.urlopen(src, timeout=timeout) as r, open(archive, "wb") as f:
                shutil.copyfileobj(r, f, length=1 << 20)
        except (urllib.error.URLError, OSError) as e:
            raise RagError(
                f"could not download {src} ({e}); this machine may be offline. Download the "
                f"archive by hand, unzip it and pass the folder path instead of the name "
                f"(md5 {BEIR_MD5[name]})"
            ) from None
        digest = _md5(archive)
        if digest != BEIR_MD5[name]:
            raise DataError(
                f"{src}: md5 {digest} does not match the published {BEIR_MD5[name]}; "
                "the download is corrupt or the archive changed"
            )
        with zipfile.ZipFile(archive) as z:
            _safe_extract(z, Path(tmp) / "out")
        unpacked = Path(tmp) / "out" / name
        if not unpacked.is_dir():
            raise DataError(f"{src}: the archive has no top-level folder {name!r}")
        os.replace(unpacked, target)
    return target


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_extract(z: zipfile.ZipFile, out: Path) -> None:
    root = out.resolve()
    for member in z.namelist():
        if not (out / member).resolve().is_relative_to(root):
            raise DataError(f"archive member {member!r} escapes the target folder")
    z.extractall(out)
