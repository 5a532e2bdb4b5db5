# pii-vault: build a wheel, then run it as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vault ./vault
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/vault vault \
    && mkdir -p /data && chown vault:vault /data && chmod 700 /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER vault
ENV VAULT_DATA_DIR=/data \
    VAULT_LISTEN=0.0.0.0:50051
VOLUME ["/data"]
EXPOSE 50051
# gRPC health over mTLS with the admin client certificate from the data directory.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["pii-vault", "health", "--as", "admin", "--target", "localhost:50051"]
CMD ["pii-vault", "serve", "--init"]
