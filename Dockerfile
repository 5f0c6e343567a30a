# The streamproc worker image. Build: docker build -t streamproc .
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /app
# No torch: the worker serves ONNX artifacts (builtin:trec and everything `streamproc distill`
# writes) with onnxruntime alone. For weights-only artifacts: pip install ".[torch]".
COPY pyproject.toml README.md ./
COPY streamproc ./streamproc
RUN pip install --no-cache-dir .
# /models belongs to the worker's user: a named volume mounted there starts with this owner, so
# `model publish` inside a container can write it (docker-compose.yml's model-init does).
RUN useradd --create-home streamproc && mkdir /models && chown streamproc /models
USER streamproc
EXPOSE 6066
# Models live in /models (CURRENT + versioned artifacts): see README "Model artifacts".
ENV STREAMPROC_MODEL_DIR=/models
# The worker's own liveness endpoint, on the port its settings name (no curl in a slim image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "streamproc.tools.probe", "/livez"]
ENTRYPOINT ["streamproc"]
CMD ["worker"]
