# The streamproc worker image. Build: docker build -t streamproc .
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /app
# No torch: the worker serves ONNX artifacts (builtin:trec and everything `streamproc distill`
# writes) with onnxruntime alone. For weights-only artifacts: pip install ".[torch]".
COPY pyproject.toml README.md ./
COPY streamproc ./streamproc
RUN pip install --no-cache-dir .
RUN useradd --create-home streamproc
USER streamproc
EXPOSE 6066
# Models are mounted at /models (CURRENT + versioned artifacts): see README "Model artifacts".
ENV STREAMPROC_MODEL_DIR=/models
ENTRYPOINT ["streamproc"]
CMD ["worker"]
