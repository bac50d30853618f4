"""The ``docker`` backend: one throw-away container per run, through the docker SDK.

Each run gets a container with no network, a read-only root, a size-capped
tmpfs working directory, memory/swap/process/CPU limits, every capability
dropped, ``no-new-privileges``, an unprivileged user, an empty environment, a
capped log, and gVisor (``runsc``) as the runtime when the engine offers it.
The container is always removed, whatever happens.

By default the container runs this host's interpreter: a tiny root file
system (created once and cached in the engine as ``evolve-sandbox-root``)
gets ``/usr`` and the allowed packages bind-mounted read-only, exactly like
the bwrap backend. With ``image=...`` (``EVOLVE_SANDBOX_IMAGE``) it runs that
image's ``python3`` instead, with nothing of the host mounted.

The request arrives as a read-only mounted file; the result leaves on the
container's stdout, which the harness reserves for it (the candidate's own
prints are sent to stderr), read with a byte cap.

A session is one such container kept running, with the same options, and the
harness in serve mode: the engine's attach socket (``stdin_open``) carries
the framed requests in and the multiplexed stdout (the framed results) and
stderr out. It needs the engine on a unix or plain TCP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from evolve.errors import SandboxError
from evolve.sandbox.base import SHM_BYTES, RunOutcome, RunSpec, SandboxLimits, SandboxSession, SessionSpec
from evolve.sandbox.confine import process_alive, run_tag
from evolve.sandbox.process import harness_settings, harness_source, request_with_code, session_setup
from evolve.sandbox.runtime import SITE_DIR, sandbox_runtime
from evolve.sandbox.supervise import CappedOutput, SupervisedSession, frame

__all__ = ["ROOTFS_REPOSITORY", "RUN_LABEL", "DockerSandbox", "rootfs_tar", "sweep_containers",
           "sweep_stale_containers"]

ROOTFS_REPOSITORY = "evolve-sandbox-root"
_IO_DIR = "/io"
_WORKDIR = "/tmp"
_REMOVE_TIMEOUT_S = 30.0
RUN_LABEL = "evolve.run"
HOST_LABEL = "evolve.host"
# With a read-only root, podman mounts /run and /var/tmp as tmpfs of unbounded size (1777 for
# /var/tmp): a candidate filled it up to the memory limit. Mounting them here, small and not
# writable by the candidate's user, leaves /tmp and /dev/shm the only places it can write.
_ENGINE_TMPFS = {"/run": "rw,nosuid,nodev,noexec,size=1m,mode=755", "/var/tmp": "ro,nosuid,nodev,noexec,size=64k,mode=755"}


def rootfs_tar() -> bytes:
    """A minimal root file system: mount points, /tmp (1777), and users for the unprivileged uid."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in [("tmp", 0o1777), ("usr", 0o755), ("opt", 0o755), (SITE_DIR.lstrip("/"), 0o755),
                           ("io", 0o755), ("etc", 0o755), ("proc", 0o755), ("dev", 0o755), ("sys", 0o755)]:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for name, target in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for name, text in [("etc/passwd", "root:x:0:0::/:/bin/false\nnobody:x:65534:65534::/tmp:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _has_gvisor(info: dict[str, Any], url: str) -> bool:
    """Whether the engine offers gVisor. podman lists runsc whenever it is configured, so a
    local engine must also have the binary."""
    if "runsc" not in (info.get("Runtimes") or {}):
        return False
    return not url.startswith("unix://") or shutil.which("runsc") is not None


class DockerSandbox:
    """Runs each candidate in a fresh container through the Docker Engine API (or podman's)."""

    name = "docker"

    def __init__(self, *, base_url: str | None = None, image: str | None = None) -> None:
        try:
            import docker
        except ImportError as exc:
            raise SandboxError("the docker backend needs the 'docker' package (pip install docker)") from exc
        self._docker = docker
        url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            self._client = docker.DockerClient(base_url=url, timeout=120)
            info = self._client.info()
        except Exception as exc:  # the SDK raises DockerException and requests' errors alike
            raise SandboxError(
                f"no Docker engine answers at {url}: {exc}. Start one, or point DOCKER_HOST at podman's "
                "Docker-compatible API (podman system service --time=0 unix:///tmp/podman.sock)"
            ) from exc
        self.runtime = "runsc" if _has_gvisor(info, url) else None
        self._harness = harness_source()
        image = image or os.environ.get("EVOLVE_SANDBOX_IMAGE")
        if image:
            self._image, self._python, self._mounts, self._paths = image, "python3", {}, []
        else:
            runtime = sandbox_runtime()
            self._image = self._ensure_rootfs()
            self._python = runtime.python
            self._mounts = {"/usr": {"bind": "/usr", "mode": "ro"}}
            if runtime.prefix is not None:
                self._mounts[runtime.prefix] = {"bind": runtime.prefix, "mode": "ro"}
            for host, inside in runtime.packages:
                self._mounts[host] = {"bind": inside, "mode": "ro"}
            self._paths = [SITE_DIR]

    def _ensure_rootfs(self) -> str:
        data = rootfs_tar()
        tag = hashlib.sha256(data).hexdigest()[:12]
        name = f"{ROOTFS_REPOSITORY}:{tag}"
        try:  # an engine that goes away between info() and here is the sandbox's failure too, never an evaluator crash
            return str(self._client.images.get(name).id)
        except self._docker.errors.ImageNotFound:
            pass
        except Exception as exc:  # the SDK raises DockerException and requests' errors alike
            raise SandboxError(f"the Docker engine stopped answering: {exc}") from exc
        try:
            answer = self._client.api.import_image_from_data(data)
            image_id = json.loads(answer.strip().splitlines()[-1])["status"]
            self._client.images.get(image_id).tag(ROOTFS_REPOSITORY, tag)
        except Exception as exc:
            raise SandboxError(f"cannot create the sandbox root image in the Docker engine: {exc}") from exc
        return str(image_id)

    async def run(self, spec: RunSpec) -> RunOutcome:
        return await asyncio.to_thread(self._run, spec)

    async def session(self, spec: SessionSpec) -> SandboxSession:
        """Start a container serving calls of ``spec.function``, talking to it over the engine's attach socket.

        Raises:
            SandboxError: when the engine cannot create, attach to or start the container, or
                serves its API over ssh:// or TLS (the session needs the plain socket).
        """
        started = time.monotonic()
        container, attach = await asyncio.to_thread(self._start_serving, spec)
        try:
            reader, writer = await asyncio.open_connection(sock=_plain_socket(attach))
        except BaseException:
            await asyncio.to_thread(_remove, container)
            raise
        child = _ServingContainer(container, attach, reader, writer, output_bytes=spec.limits.output_bytes, started=started)
        child.stdin.write(frame(session_setup(spec)))
        return SupervisedSession(child, wall_s=spec.limits.wall_s, result_bytes=spec.limits.result_bytes, on_close=lambda: None)

    def _create(self, limits: SandboxLimits, settings: str, *, volumes: dict[str, dict[str, str]],
                stdin_open: bool = False) -> Any:
        """Create (not start) a sandbox container running the harness with ``settings``: every run and session gets these options."""
        ulimit = self._docker.types.Ulimit
        return self._client.containers.create(
            self._image,
            [self._python, "-I", "-B", "-c", self._harness, settings],
            user="65534:65534",
            network_mode="none",
            read_only=True,
            tmpfs={_WORKDIR: f"rw,nosuid,nodev,size={limits.file_bytes},mode=1777", **_ENGINE_TMPFS},
            shm_size=min(limits.file_bytes, SHM_BYTES),
            working_dir=_WORKDIR,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,
            pids_limit=limits.processes,
            nano_cpus=round(limits.cpus * 1e9),  # the run's CPU share, like the local backends' quota
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            environment={"HOME": _WORKDIR, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            init=True,
            log_config={"type": "none"},  # output is streamed and capped here; nothing lands on disk
            volumes=volumes,
            ulimits=[
                ulimit(name="cpu", soft=limits.cpu_s, hard=limits.cpu_s),
                ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
                ulimit(name="nproc", soft=limits.processes, hard=limits.processes),
                ulimit(name="fsize", soft=limits.file_bytes, hard=limits.file_bytes),
                ulimit(name="core", soft=0, hard=0),
            ],
            stdin_open=stdin_open,
            runtime=self.runtime,
            labels={RUN_LABEL: run_tag(), HOST_LABEL: socket.gethostname()},  # for the sweeps, when an evaluator was killed
        )

    def _start_serving(self, spec: SessionSpec) -> tuple[Any, Any]:
        """Create the session's container, attach to its stdin, stdout and stderr, and start it.

        Raises:
            SandboxError: when the engine refuses any of it (the container is removed).
        """
        settings = harness_settings(spec, result="stdout", paths=self._paths)
        container = None
        try:
            container = self._create(spec.limits, settings, volumes=self._mounts, stdin_open=True)
            attach = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            container.start()
        except Exception as exc:  # the SDK raises DockerException and requests' errors alike
            if container is not None:
                _remove(container)
            raise SandboxError(f"the Docker engine could not start a sandbox container: {exc}") from exc
        return container, attach

    def _run(self, spec: RunSpec) -> RunOutcome:
        limits = spec.limits
        iodir = tempfile.mkdtemp(prefix="evolve-io-")
        started = time.monotonic()
        container = None
        try:
            Path(iodir).chmod(0o755)  # the unprivileged user inside reads the request
            request_file = Path(iodir) / "request.json"
            request_file.write_bytes(request_with_code(spec))
            request_file.chmod(0o644)
            settings = harness_settings(spec, result="stdout", paths=self._paths, request=f"{_IO_DIR}/request.json")
            try:
                container = self._create(limits, settings, volumes={**self._mounts, iodir: {"bind": _IO_DIR, "mode": "ro"}})
                stream = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=False)
                container.start()
            except Exception as exc:
                raise SandboxError(f"the Docker engine could not start a sandbox container: {exc}") from exc
            return self._collect(container, stream, spec, started)
        finally:
            if container is not None:
                _remove(container)
            shutil.rmtree(iodir, ignore_errors=True)

    def _collect(self, container: Any, stream: Any, spec: RunSpec, started: float) -> RunOutcome:
        limits = spec.limits
        result, output = bytearray(), bytearray()
        state = {"timed_out": False}
        overflow = result_overflow = False

        def _kill() -> None:
            state["timed_out"] = True
            with contextlib.suppress(Exception):
                container.kill()

        timer = threading.Timer(limits.wall_s, _kill)
        timer.daemon = True
        timer.start()
        try:
            for out_chunk, err_chunk in stream:
                if out_chunk:
                    result += out_chunk
                    if len(result) > limits.result_bytes:
                        result_overflow = True
                if err_chunk:
                    output += err_chunk
                    if len(output) > limits.output_bytes:
                        overflow = True
                if overflow or result_overflow:
                    break
        except Exception:  # a stream cut by the kill, or an engine hiccup: the exit status tells the rest
            pass
        if overflow or result_overflow:
            # Stop reading first: an engine blocked on a full attach socket cannot process the kill.
            with contextlib.suppress(Exception):
                stream.close()
            with contextlib.suppress(Exception):
                container.kill()
        try:  # the streams can close before the process ends: the timer still guards the wall clock
            status = container.wait(timeout=max(0.0, started + limits.wall_s - time.monotonic()) + _REMOVE_TIMEOUT_S)
            exit_code: int | None = int(status.get("StatusCode", -1))
        except Exception:
            exit_code = None
        finally:
            timer.cancel()
        if exit_code is not None and exit_code >= 128 and (state["timed_out"] or overflow or result_overflow):
            exit_code = -(exit_code - 128)  # report a kill the way subprocess does
        return RunOutcome(
            exit_code=exit_code,
            result=bytes(result) if result and not result_overflow else None,
            stdout=b"",
            stderr=bytes(output[: limits.output_bytes]),
            timed_out=state["timed_out"],
            output_exceeded=overflow,
            result_exceeded=result_overflow,
            wall_s=time.monotonic() - started,
        )


def _tagged_containers(selector: str) -> list[Any]:
    """Sandbox containers on the engine ``DOCKER_HOST`` names whose labels match ``selector``; none if it is unreachable."""
    try:
        import docker

        client = docker.DockerClient(base_url=os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock", timeout=30)
        return list(client.containers.list(all=True, filters={"label": selector}))
    except Exception:  # the SDK raises DockerException and requests' errors alike
        return []


def sweep_containers(tag: str, *, family: bool = False) -> int:
    """Remove every sandbox container of evaluation ``tag`` (what a killed evaluator left); how many.

    With ``family``, also those of the tags made from it (a warm worker's evaluations ``<tag>e<n>``).
    """
    if family:
        found = [c for c in _tagged_containers(f"{HOST_LABEL}={socket.gethostname()}")
                 if str(c.labels.get(RUN_LABEL, "")).startswith(tag)]
    else:
        found = _tagged_containers(f"{RUN_LABEL}={tag}")
    for container in found:
        _remove(container)
    return len(found)


def sweep_stale_containers() -> int:
    """Remove the sandbox containers of this host whose controller (the pid in their tag) is gone; how many."""
    removed = 0
    for container in _tagged_containers(f"{HOST_LABEL}={socket.gethostname()}"):
        owner = str(container.labels.get(RUN_LABEL, "")).split("x")[0]
        if owner.isdigit() and not process_alive(int(owner)):
            _remove(container)
            removed += 1
    return removed


def _remove(container: Any) -> None:
    """Remove a container, killing it if it runs; a container already gone is fine."""
    with contextlib.suppress(Exception):
        container.remove(force=True)


def _plain_socket(attach: Any) -> socket.socket:
    """The stream socket under the SDK's attach handle.

    Raises:
        SandboxError: when it is not a plain socket (an ssh:// or TLS engine URL).
    """
    raw = getattr(attach, "_sock", attach)
    if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
        raise SandboxError("docker sessions need the engine's API on a unix or plain TCP socket, not ssh:// or TLS")
    return raw


class _Demultiplexed:
    """The container's stdout (the result channel) out of the attach stream, read only when a result is awaited.

    The stream is the engine's multiplexed format: an 8-byte header (stream 1 or 2, three
    zero bytes, the payload's size big-endian) before each payload. Stderr met on the way
    goes to the capped output; the end of the stream sets ``ended``.
    """

    def __init__(self, stream: asyncio.StreamReader, err: CappedOutput, ended: asyncio.Event) -> None:
        self._stream = stream
        self._err = err
        self._ended = ended
        self._pending = bytearray()

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes of the container's stdout.

        Raises:
            asyncio.IncompleteReadError: when the stream ends first.
        """
        while len(self._pending) < n:
            try:
                header = await self._stream.readexactly(8)
                payload = await self._stream.readexactly(int.from_bytes(header[4:], "big"))
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._ended.set()
                raise asyncio.IncompleteReadError(bytes(self._pending), n) from exc
            if header[0] == 1:
                self._pending += payload
            else:
                self._err.add(payload)
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data


class _ServingContainer:
    """A started container serving a session, as the ``ServedChild`` that ``SupervisedSession`` drives."""

    def __init__(self, container: Any, attach: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 output_bytes: int, started: float) -> None:
        self.started = started
        self.stdin = writer
        self.overflow = asyncio.Event()
        budget = [output_bytes]
        self.out, self.err = CappedOutput(budget, self.overflow), CappedOutput(budget, self.overflow)
        ended = asyncio.Event()
        self.result_reader = _Demultiplexed(reader, self.err, ended)
        self.waiter: asyncio.Future[Any] = asyncio.ensure_future(ended.wait())
        self.stop_events: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.overflow.wait())]
        self._container = container
        self._attach = attach  # holds the SDK's response, and with it the socket
        self._exit_code: int | None = None
        self._killed = False
        self._closed = False

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    def kill(self) -> None:
        """Kill the container (from the session's watchdog thread)."""
        with contextlib.suppress(Exception):
            self._container.kill()
            self._killed = True

    async def close(self, *extra: asyncio.Future[None]) -> None:
        """Stop reading, kill and remove the container; keep its exit status. Idempotent."""
        for task in extra:
            task.cancel()
        if self._closed:
            return
        self._closed = True
        # Close the socket first: an engine blocked on a full attach socket cannot process the kill.
        self.stdin.close()
        with contextlib.suppress(Exception):
            self._attach.close()
        self._exit_code = await asyncio.to_thread(self._finish)
        pending = [self.waiter, *self.stop_events]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _finish(self) -> int | None:
        self.kill()
        try:
            status = self._container.wait(timeout=_REMOVE_TIMEOUT_S)
            code: int | None = int(status.get("StatusCode", -1))
        except Exception:  # an engine hiccup: the status is unknown, the container is removed all the same
            code = None
        _remove(self._container)
        if self._killed and (code is None or code >= 128 or code == 0):
            code = -signal.SIGKILL  # report our kill the way subprocess does
        return code
