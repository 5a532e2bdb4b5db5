# pii-vault: a non-root image with hash-checked dependencies and no keys in it.
#
# - The base is pinned to an exact patch release (pin its digest too in your registry).
# - Runtime dependencies come from requirements.lock (pip-compile --generate-hashes from
#   pyproject.toml) and install with --require-hashes; the package itself then installs with
#   --no-deps, so nothing unpinned comes in.
# - Nothing here makes a key: the image and its /data volume hold no CA, no server key and no
#   master key. Run `pii-vault init --key-provider ...` as a separate step against your HSM or
#   Transit and mount the TLS files from your own CA into /data/tls (see OPERATIONS.md and
#   deploy/). `serve --init` would make a development CA with its private key in /data:
#   never in a production image.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vault ./vault
# The generated stubs live in the client distribution (pii-vault-client), which the server needs.
COPY clients/python ./clients/python
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./clients/python .

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin vault \
    && mkdir -p /data && chown 10001:10001 /data && chmod 700 /data
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER 10001:10001
ENV PII_VAULT_DATA_DIR=/data \
    PII_VAULT_LISTEN=0.0.0.0:50051 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
# 50051: gRPC over mTLS. 9464: Prometheus /metrics, only when PII_VAULT_METRICS_LISTEN is set.
EXPOSE 50051 9464
# gRPC health over mTLS with a client certificate that needs no grant: the health service
# asks only that the certificate chains to the CA. Mount it as /data/tls/clients/probe.{crt,key}.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["pii-vault", "health", "--as", "probe", "--target", "localhost:50051"]
CMD ["pii-vault", "serve"]
