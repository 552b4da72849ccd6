# syntax=docker/dockerfile:1
# The controller image, the chart's default `image.repository: dra-kwok-driver` (tag: appVersion):
#   docker build -t dra-kwok-driver:0.1.0 .
# NOTE: this image has never been built here: the development and CI environment has no container
# engine. What is tested is the same install step (a pip install of the project from
# pyproject.toml; the tests add `-e` and the dev extras) and the chart running the resulting
# `dra-kwok` program exactly as the Deployment would (tests/integration/test_chart.py).

# --- builder: the project and its runtime dependencies, installed into a venv ---------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller/ controller/
# Runtime dependencies only (no `[dev]`); not editable, so /src is not needed at runtime.
RUN pip install --upgrade pip && pip install . && dra-kwok --help >/dev/null

# --- runtime: the venv on a clean base, as a non-root user ---------------------------------------
FROM python:3.11-slim
# Byte code was compiled by pip at install time; the root filesystem is read-only in the chart.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nonroot
USER 65532:65532
# metrics, health (`dra-kwok run` defaults; the chart sets them through DRA_KWOK_*_PORT).
EXPOSE 8080 8081
ENTRYPOINT ["dra-kwok"]
CMD ["run"]
